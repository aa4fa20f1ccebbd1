"""PushT: a disc agent pushes a T-shaped block to a goal pose (pymunk physics, numpy pixels).

Physics, as in stable-worldmodel's PushT (the environment LeWorldModel evaluates on), itself
the diffusion-policy PushT with a bigger T: a 512 x 512 arena walled at its border, no
gravity, a kinematic disc of radius 15 driven by a PD controller (kp 100, kv 20) and a T of
mass 1 made of a 160 x 40 bar and a 40 x 120 stem, its moment of inertia and centre of
gravity computed as the references do (the bar's moment twice; the mean of the two boxes'
centroids). The space's damping is 0, so the T keeps no velocity of its
own: it moves only while pushed (quasi-static) and stops at once when nothing touches it.
The references set `friction` on bodies, which pymunk ignores, so their contacts are
frictionless; ours are too. Internally everything is in those 512 units; positions outside
this module are in arena units (divided by 512, so [0, 1]) and angles in radians.

Action: a relative move in [-1, 1]^2 of the agent's PD target, times 100 units (as the
reference's `relative=True`), integrated over 10 physics substeps of 0.01 s (10 Hz control).
From rest a full action moves the agent 30 units (6% of the arena) in one step; held, the
agent cruises at 41 units (8%) per step. The target is kept inside the walls.
Proprio: the agent's position and velocity, (x, y, vx, vy), in arena units and arena units
per second (so roughly [0, 1] and [-1, 1]).

Episodes: the T starts at a uniform angle and a uniform position with its whole outline at
least 40 units (> the agent's diameter) inside the walls; the agent starts uniform in the
arena, at least 10 units clear of the T. The goal pose is the start pose moved by a
translation of length U(32, 96) units (6-19% of the arena) in a uniform direction and turned
by U(-45, 45) degrees, again 40 units inside the walls, so never solved at the start. (The
references' goals are instead a recorded expert's state 25 steps later, which needs their
data set; these bounds are our choice, a move a pusher makes well within the budget.) The
goal image shows the T at its goal pose and the
agent where a pusher ends: touching the T on the side it pushed from, behind the centre of
gravity along the translation. `info["category"]` is "turn" when the goal asks more than the
angle tolerance of rotation, else "shift". `options` may fix any of "block" (x, y, angle),
"agent" (x, y) and "goal" (x, y, angle), in arena units.
Success (stable-worldmodel's `eval_state`): the T's reference point (the middle of the top
edge of its bar, the body origin) within 20 units (3.9% of the arena) of the goal's and its
angle within pi/9 (20 degrees). stable-worldmodel also puts the agent's position in that
20-unit norm, because its goals are whole recorded states; ours tests the T alone, since
the task is to place the T; `state_matches` is theirs, for goals that are recorded states
(world/protocol.py). Budget: 50 steps, LeWorldModel's PushT `eval_budget`.
`expert_action` picks, among contact points on the T's outline, the one whose push (along
the face normal) best moves the T towards its goal in translation and rotation, walks
around the T to it and pushes. Measured success within the budget: 20/20 on seeds 0-19
(198/200 on seeds 100-299); with the collector's Gaussian noise of std 0.5 on its actions,
14/20 (168/200). One step (10 substeps) costs about 0.05 ms; a 64 x 64 rendering 0.12 ms.
"""
from __future__ import annotations

import math

import numpy as np
import pymunk

from jepalab.envs.base import PixelEnv, wrap_angle

ARENA = 512.0
WALL_INSIDE = (7.0, 504.0)     # inner faces of the wall segments (centre 5 and 506, radius 2)
AGENT_RADIUS = 15.0
KP, KV = 100.0, 20.0           # PD gains of the agent's controller
DT, SUBSTEPS = 0.01, 10        # physics step, physics steps per env step
ACTION_SCALE = 100.0           # a full action moves the PD target this far
POSITION_TOL = 20.0            # success: reference point within this distance of the goal's
ANGLE_TOL = math.pi / 9        # and angle within this
GOAL_SHIFT = (32.0, 96.0)      # length of the goal's translation from the start
GOAL_TURN = math.pi / 4        # largest goal rotation from the start
MARGIN = 40.0                  # start and goal T stay this far inside the walls
# The T in its own frame (y along the stem): boxes (centre x, centre y, half width, half
# height). The stem box reaches into the bar so that the union has no seam inside.
BOXES = np.array([[0.0, 20.0, 80.0, 20.0], [0.0, 90.0, 20.0, 70.0]])
CORNERS = np.array([[-80, 0], [80, 0], [80, 40], [20, 40], [20, 160], [-20, 160],
                    [-20, 40], [-80, 40]], dtype=np.float64)
COG = np.array([0.0, 50.0])    # mean of the two boxes' centroids, as the references
# The expert: PD-target gain on the position error and on the velocity (brake), push depth
# per step, walking speed round the T, score margin before it changes contact (stick), and
# cost per arena length walked to a contact.
EXPERT_GAIN, EXPERT_BRAKE, EXPERT_PUSH, EXPERT_ORBIT = 3.5, 0.12, 30.0, 40.0
EXPERT_STICK, EXPERT_WALK_COST = 0.15, 0.5
BACKGROUND = np.array([240, 240, 236], np.float32)
BLOCK_COLOUR = np.array([119, 136, 153], np.float32)   # LightSlateGray, as the references
AGENT_COLOUR = np.array([65, 105, 225], np.float32)    # RoyalBlue


def rotation(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def t_distance(points: np.ndarray, pose) -> np.ndarray:
    """Signed distance (exact outside, negative inside) from `points` (..., 2) to the T at
    `pose` (x, y, angle), all in 512 units."""
    x, y, angle = pose
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = points[..., 0] - x, points[..., 1] - y
    local_x, local_y = c * dx + s * dy, -s * dx + c * dy
    distance = None
    for cx, cy, hx, hy in BOXES:
        qx, qy = np.abs(local_x - cx) - hx, np.abs(local_y - cy) - hy
        box = (np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
               + np.minimum(np.maximum(qx, qy), 0.0))
        distance = box if distance is None else np.minimum(distance, box)
    return distance


def t_corners(pose) -> np.ndarray:
    return CORNERS @ rotation(pose[2]).T + np.asarray(pose[:2])


def t_inside(pose, margin: float) -> bool:
    corners = t_corners(pose)
    return bool(corners.min() >= WALL_INSIDE[0] + margin
                and corners.max() <= WALL_INSIDE[1] - margin)


def centre_of_gravity(pose) -> np.ndarray:
    return rotation(pose[2]) @ COG + np.asarray(pose[:2])


def behind(pose, direction: np.ndarray, clearance: float) -> np.ndarray:
    """The outermost point on the ray from the T's centre of gravity backwards along
    `direction` that is `clearance` away from the T (sphere tracing in from outside)."""
    centre = centre_of_gravity(pose)
    distance = 250.0
    for _ in range(40):
        gap = float(t_distance(centre - distance * direction, pose)) - clearance
        if gap < 0.05:
            break
        distance -= gap
    return centre - distance * direction


def pusher_at_goal(start, goal) -> np.ndarray:
    """Where a pusher ends that moved the T from `start` to `goal`: touching it behind its
    centre of gravity, along the translation (the stem's way if there is none)."""
    shift = centre_of_gravity(goal) - centre_of_gravity(start)
    norm = float(np.linalg.norm(shift))
    direction = shift / norm if norm > 1e-6 else rotation(goal[2]) @ np.array([0.0, 1.0])
    return behind(goal, direction, AGENT_RADIUS + 2.0)


def _contacts() -> np.ndarray:
    """Candidate pushing points on the T's outline, in its frame: rows (x, y, nx, ny) with
    (nx, ny) the inward normal (the push direction). Points keep away from corners so that
    the agent's disc touches one face only."""
    faces = [  # (fixed coordinate axis, value, range along the face, inward normal)
        ("y", 0.0, (-72, 72), (0, 1)), ("y", 40.0, (-72, -38), (0, -1)),
        ("y", 40.0, (38, 72), (0, -1)), ("x", -80.0, (8, 32), (1, 0)),
        ("x", 80.0, (8, 32), (-1, 0)), ("x", -20.0, (58, 150), (1, 0)),
        ("x", 20.0, (58, 150), (-1, 0)), ("y", 160.0, (-10, 10), (0, -1))]
    rows = []
    for axis, value, (low, high), normal in faces:
        count = max(2, int((high - low) // 12) + 1)
        for along in np.linspace(low, high, count):
            point = (along, value) if axis == "y" else (value, along)
            rows.append((*point, *normal))
    return np.array(rows, dtype=np.float64)


CONTACTS = _contacts()


class PushT(PixelEnv):
    max_episode_steps = 50

    def __init__(self, size: int = 64):
        super().__init__(size, action_dim=2, proprio_dim=4)
        centres = (np.arange(size, dtype=np.float32) + 0.5) * np.float32(ARENA / size)
        self._pixels = np.stack(np.meshgrid(centres, centres, indexing="xy"), axis=-1)
        self._pixel_size = ARENA / size
        self._goal = np.array([256.0, 256.0, 0.0])          # x, y, angle (512 units)
        self._goal_agent = np.array([256.0, 400.0])
        self._contact = None                                # the expert's current plan
        self._build(np.array([256.0, 300.0, 0.0]), np.array([256.0, 420.0]))

    # --- physics ----------------------------------------------------------------------
    def _build(self, block_pose, agent_position) -> None:
        """A fresh space (no contact cache carried over between episodes)."""
        space = pymunk.Space()
        space.gravity = (0.0, 0.0)
        space.damping = 0.0
        for a, b in (((5, 506), (5, 5)), ((5, 5), (506, 5)), ((506, 5), (506, 506)),
                     ((5, 506), (506, 506))):
            space.add(pymunk.Segment(space.static_body, a, b, 2))
        bar = [(-80, 40), (80, 40), (80, 0), (-80, 0)]
        stem = [(-20, 40), (-20, 160), (20, 160), (20, 40)]
        block = pymunk.Body(1.0, 2 * pymunk.moment_for_poly(1.0, bar))
        shapes = [pymunk.Poly(block, bar), pymunk.Poly(block, stem)]
        block.center_of_gravity = tuple(COG)
        block.angle = float(block_pose[2])
        block.position = (float(block_pose[0]), float(block_pose[1]))
        agent = pymunk.Body(body_type=pymunk.Body.KINEMATIC)
        agent.position = (float(agent_position[0]), float(agent_position[1]))
        space.add(block, *shapes, agent, pymunk.Circle(agent, AGENT_RADIUS))
        self.space, self.block, self.agent = space, block, agent

    def _apply(self, action):
        low, high = WALL_INSIDE[0] + AGENT_RADIUS, WALL_INSIDE[1] - AGENT_RADIUS
        x, y = self.agent.position
        target_x = min(max(x + float(action[0]) * ACTION_SCALE, low), high)
        target_y = min(max(y + float(action[1]) * ACTION_SCALE, low), high)
        vx, vy = self.agent.velocity
        for _ in range(SUBSTEPS):
            x, y = self.agent.position
            vx += (KP * (target_x - x) - KV * vx) * DT
            vy += (KP * (target_y - y) - KV * vy) * DT
            self.agent.velocity = (vx, vy)
            self.space.step(DT)
        x, y = self.agent.position
        if not (low <= x <= high and low <= y <= high):    # a kinematic body ignores walls
            self.agent.position = (min(max(x, low), high), min(max(y, low), high))

    # --- task ---------------------------------------------------------------------------
    def _block_pose(self) -> np.ndarray:
        """The T's pose (x, y, angle) in 512 units."""
        x, y = self.block.position
        return np.array([x, y, self.block.angle])

    def block_pose(self) -> np.ndarray:
        """The T's pose (x, y, angle) in arena units."""
        return _public(self._block_pose())

    def goal_pose(self) -> np.ndarray:
        """The goal pose (x, y, angle) in arena units."""
        return _public(self._goal)

    def goal_agent_position(self) -> np.ndarray:
        """Where the goal image draws the agent, in arena units."""
        return self._goal_agent / ARENA

    def _reset_task(self, rng, options):
        fixed = {key: _option(options, key, n) for key, n in
                 (("block", 3), ("agent", 2), ("goal", 3))}
        if options:
            raise ValueError(f"PushT.reset: unknown options {sorted(options)}; valid: "
                             "block (x, y, angle), agent (x, y), goal (x, y, angle)")
        block = self._draw_block(rng, fixed["block"])
        self._goal, self._goal_agent = self._draw_goal(rng, block, fixed["goal"])
        self._build(block, self._draw_agent(rng, block, fixed["agent"]))
        self._contact = None
        return "turn" if abs(wrap_angle(self._goal[2] - block[2])) > ANGLE_TOL else "shift"

    @staticmethod
    def _draw_block(rng, block):
        if block is not None:
            if not t_inside(block, 0.0):
                raise ValueError(f"PushT.reset: options['block'] {_shown(block)} puts the T "
                                 "through a wall; keep its outline inside [0.014, 0.984]")
            return block
        while True:
            block = np.array([*rng.uniform(100, 412, 2), rng.uniform(-math.pi, math.pi)])
            if t_inside(block, MARGIN):
                return block

    @staticmethod
    def _draw_goal(rng, block, goal):
        """The goal pose and where the goal image draws the agent."""
        if goal is not None:
            if not t_inside(goal, 0.0):
                raise ValueError(f"PushT.reset: options['goal'] {_shown(goal)} puts the T "
                                 "through a wall; keep its outline inside [0.014, 0.984]")
            return goal, np.clip(pusher_at_goal(block, goal), 22.0, 490.0)
        for _ in range(1000):
            heading, length = rng.uniform(0, 2 * math.pi), rng.uniform(*GOAL_SHIFT)
            goal = block + np.array([length * math.cos(heading), length * math.sin(heading),
                                     rng.uniform(-GOAL_TURN, GOAL_TURN)])
            agent = pusher_at_goal(block, goal)
            if t_inside(goal, MARGIN) and _in_arena(agent):
                return goal, agent
        raise ValueError(f"PushT.reset: no goal fits in the arena from options['block'] "
                         f"{_shown(block)}; move the T away from the walls or pass "
                         "options['goal'] too")

    @staticmethod
    def _draw_agent(rng, block, agent):
        if agent is not None:
            if not (_in_arena(agent) and t_distance(agent, block) >= AGENT_RADIUS):
                raise ValueError(f"PushT.reset: options['agent'] {_shown(agent)} overlaps "
                                 "the T or a wall")
            return agent
        while True:
            agent = rng.uniform(50, 462, 2)
            if t_distance(agent, block) >= AGENT_RADIUS + 10:
                return agent

    def set_block_pose(self, pose) -> None:
        """Put the T at `pose` (x, y, angle) in arena units, at rest (tests)."""
        pose = _as_pose(pose, 3, "pose")
        self.block.angle = float(pose[2])
        self.block.position = (float(pose[0]), float(pose[1]))
        self.block.velocity, self.block.angular_velocity = (0.0, 0.0), 0.0
        self.space.reindex_shapes_for_body(self.block)

    def set_agent(self, position) -> None:
        """Put the agent at `position` (x, y) in arena units, at rest (tests)."""
        position = _as_pose(position, 2, "position")
        self.agent.position = (float(position[0]), float(position[1]))
        self.agent.velocity = (0.0, 0.0)
        self.space.reindex_shapes_for_body(self.agent)

    def proprio(self):
        x, y = self.agent.position
        vx, vy = self.agent.velocity
        return (np.array([x, y, vx, vy]) / ARENA).astype(np.float32)

    def goal_proprio(self):
        return np.concatenate([self._goal_agent / ARENA, np.zeros(2)]).astype(np.float32)

    def state(self) -> np.ndarray:
        """(agent x, y, T x, y, angle, agent vx, vy), arena units: the whole state (the T
        keeps no velocity of its own)."""
        x, y = self.agent.position
        vx, vy = self.agent.velocity
        return np.concatenate([_public([x, y, 0.0])[:2], self.block_pose(),
                               np.array([vx, vy]) / ARENA])

    def restore(self, state) -> None:
        """Set the state (a fresh physics space, as at reset)."""
        state = np.asarray(state, dtype=np.float64)
        self._build(_as_pose(state[2:5], 3, "state[2:5]"), _as_pose(state[:2], 2, "state[:2]"))
        self.agent.velocity = (float(state[5] * ARENA), float(state[6] * ARENA))
        self._contact = None

    def _set_goal_state(self, state) -> None:
        self._goal = _as_pose(state[2:5], 3, "goal_state[2:5]")
        self._goal_agent = _as_pose(state[:2], 2, "goal_state[:2]")

    def state_error(self, goal_state) -> float:
        """stable-worldmodel's `eval_state` asks the 4-vector of agent and T position errors
        within 20 units and the T's angle within pi/9 of the goal state's: the larger ratio."""
        now, goal = self.state(), np.asarray(goal_state, dtype=np.float64)
        position = np.linalg.norm((now[:4] - goal[:4]) * ARENA) / POSITION_TOL
        return float(max(position, abs(wrap_angle(now[4] - goal[4])) / ANGLE_TOL))

    def success(self) -> bool:
        pose = self._block_pose()
        near = math.hypot(pose[0] - self._goal[0], pose[1] - self._goal[1]) < POSITION_TOL
        return bool(near and abs(wrap_angle(pose[2] - self._goal[2])) < ANGLE_TOL)

    # --- expert -------------------------------------------------------------------------
    def expert_action(self, rng):
        """Push the T at the outline point whose push best moves it towards the goal.

        Each candidate contact (point r from the centre of gravity, push direction n, both
        world-frame) moves the T, for a unit frictionless push, by the twist (n, r x n / I)
        (mass 1); its score is the cosine between (n, (r x n) / rho) and the wanted
        (translation, rho * rotation), rho the radius of gyration, less a cost of walking
        there. The agent walks round the T to the best contact, then pushes along n.
        Deterministic (`rng` is unused): data collection adds its own noise.
        """
        pose = self._block_pose()
        agent = np.array(self.agent.position)
        velocity = np.array(self.agent.velocity)
        centre = centre_of_gravity(pose)
        turn = rotation(pose[2])
        error = centre_of_gravity(self._goal) - centre
        spin = wrap_angle(self._goal[2] - pose[2])
        rho = math.sqrt(self.block.moment)
        wanted = np.array([*error, rho * spin])
        wanted_norm = float(np.linalg.norm(wanted))
        settled = (math.hypot(*(pose[:2] - self._goal[:2])) < 0.4 * POSITION_TOL
                   and abs(spin) < 0.4 * ANGLE_TOL)
        if settled:
            return _towards(agent, velocity, agent)                    # done: hold still
        points = (CONTACTS[:, :2] - COG) @ turn.T + centre
        normals = CONTACTS[:, 2:] @ turn.T
        lever = points - centre
        moment = lever[:, 0] * normals[:, 1] - lever[:, 1] * normals[:, 0]
        twist = np.column_stack([normals, moment / rho])
        score = twist @ wanted / (np.linalg.norm(twist, axis=1) * wanted_norm)
        stands = points - normals * (AGENT_RADIUS + 2.0)
        low, high = WALL_INSIDE[0] + AGENT_RADIUS, WALL_INSIDE[1] - AGENT_RADIUS
        reachable = (stands >= low).all(axis=1) & (stands <= high).all(axis=1)
        walk = np.linalg.norm(stands - agent, axis=1) / ARENA
        value = np.where(reachable, score - EXPERT_WALK_COST * walk, -np.inf)
        best = int(np.argmax(value))
        if self._contact is not None and value[self._contact] > value[best] - EXPERT_STICK:
            best = self._contact
        self._contact = best
        stand, push = stands[best], normals[best]
        offset = agent - stand
        if np.linalg.norm(offset) < 8.0:                               # in place: push
            along = min(1.0, wanted_norm / 60.0) * EXPERT_PUSH + 10.0
            lateral = offset - push * (offset @ push)
            return _towards(agent, velocity, agent + push * along - lateral)
        if self._clear(agent, stand, pose):
            return _towards(agent, velocity, stand)
        radial = agent - centre                                        # walk around the T
        radial /= max(float(np.linalg.norm(radial)), 1e-9)
        side = radial[0] * (stand - centre)[1] - radial[1] * (stand - centre)[0]
        tangent = np.array([-radial[1], radial[0]]) * (1.0 if side >= 0 else -1.0)
        gap = float(t_distance(agent, pose)) - (AGENT_RADIUS + 12.0)
        return _towards(agent, velocity, agent + tangent * EXPERT_ORBIT - radial * gap)

    @staticmethod
    def _clear(start, end, pose) -> bool:
        path = start + np.linspace(0.0, 1.0, 12)[:, None] * (end - start)
        return bool((t_distance(path, pose) >= AGENT_RADIUS + 1.0).all())

    # --- pixels -----------------------------------------------------------------------
    def _render(self, goal: bool) -> np.ndarray:
        pose = self._goal if goal else self._block_pose()
        agent = self._goal_agent if goal else np.array(self.agent.position)
        image = np.empty((self.size, self.size, 3), np.float32)
        image[:] = BACKGROUND
        corners = t_corners(pose)
        window = self._window(corners.min(axis=0), corners.max(axis=0))
        distance = t_distance(self._pixels[window], pose)
        cover = np.clip(0.5 - distance / self._pixel_size, 0.0, 1.0)[..., None]
        image[window] += (BLOCK_COLOUR - BACKGROUND) * cover
        window = self._window(agent - AGENT_RADIUS, agent + AGENT_RADIUS)
        centres = self._pixels[window]
        distance = np.hypot(centres[..., 0] - agent[0], centres[..., 1] - agent[1])
        cover = np.clip(0.5 - (distance - AGENT_RADIUS) / self._pixel_size, 0.0, 1.0)[..., None]
        image[window] += (AGENT_COLOUR - image[window]) * cover
        return (image + 0.5).astype(np.uint8)

    def _window(self, low, high) -> tuple[slice, slice]:
        """The (rows, columns) of the pixels within half a pixel of the box [low, high]
        (x, y in 512 units): the only ones a shape inside the box can cover."""
        first = np.clip(np.floor(np.asarray(low) / self._pixel_size) - 1, 0, self.size)
        last = np.clip(np.ceil(np.asarray(high) / self._pixel_size) + 1, 0, self.size)
        return slice(int(first[1]), int(last[1])), slice(int(first[0]), int(last[0]))


def _towards(agent, velocity, target) -> np.ndarray:
    """The action whose PD target makes the agent settle at `target` (velocity damped)."""
    step = (target - agent) * EXPERT_GAIN - velocity * EXPERT_BRAKE
    norm = float(np.linalg.norm(step)) / ACTION_SCALE
    return (step / ACTION_SCALE / max(norm, 1.0)).astype(np.float32)


def _in_arena(point) -> bool:
    low, high = WALL_INSIDE[0] + AGENT_RADIUS, WALL_INSIDE[1] - AGENT_RADIUS
    return bool(low <= point[0] <= high and low <= point[1] <= high)


def _shown(pose) -> list:
    return _public(pose).round(4).tolist()


def _public(pose) -> np.ndarray:
    """512 units -> arena units."""
    pose = np.array(pose, dtype=np.float64)
    pose[:2] /= ARENA
    return pose


def _as_pose(value, length: int, name: str) -> np.ndarray:
    """Arena units -> 512 units, checked."""
    try:
        array = np.array(value, dtype=np.float64).reshape(-1)  # a copy: scaled below
    except (TypeError, ValueError):
        array = np.array([])
    if array.shape != (length,) or not np.isfinite(array).all():
        raise ValueError(f"PushT: {name} must be {length} finite numbers "
                         f"({'x, y, angle' if length == 3 else 'x, y'} in arena units), "
                         f"got {value!r}")
    array[:2] *= ARENA
    return array


def _option(options: dict, key: str, length: int):
    if key not in options:
        return None
    return _as_pose(options.pop(key), length, f"options[{key!r}]")
