"""Two-Room: a point agent in a unit square split by a wall with one door (pure numpy).

Geometry (unit square, y down as in the image): a vertical wall of thickness 0.05 at
x = 0.5 with a door of height 0.25 centred at y = 0.5; the agent is a disc of radius 0.05.
Action: a velocity in [-1, 1]^2, times 0.04 per step; the agent slides along walls and
stops at them (axis by axis). Proprio: the agent's position (x, y).
Success: the agent's centre within 0.07 of the goal's (LeWM's test: 16 px of a 224 px
arena). Budget: 100 steps (LeWM evaluates with 50 steps to goals 25 steps away, or in its
paper 150 steps to goals 100 away; ours are drawn anywhere, up to about 1.4 apart).
Start and goal are drawn uniformly in the free space; `options={"cross_door": True}` puts
them in different rooms, False in the same room at least 0.2 apart; evaluation episode i
crosses the door when i is odd, so half the episodes do.
State (`state()`, `restore`): the agent's position; the anchors' success test is the same.
"""
from __future__ import annotations

import numpy as np

from jepalab.envs.base import PixelEnv

RADIUS = 0.05
SPEED = 0.04
SUCCESS_DISTANCE = 16 / 224
WALL = (0.475, 0.525)          # x extent of the wall
DOOR = (0.375, 0.625)          # y extent of the door
BACKGROUND = np.array([235, 235, 228], np.float32)
WALL_COLOUR = np.array([70, 70, 80], np.float32)
AGENT_COLOUR = np.array([215, 45, 45], np.float32)


def blocked(p: np.ndarray) -> bool:
    """Whether an agent centred at `p` would overlap the walls or leave the square."""
    x, y = p
    if not (RADIUS <= x <= 1 - RADIUS and RADIUS <= y <= 1 - RADIUS):
        return True
    in_wall_band = WALL[0] - RADIUS < x < WALL[1] + RADIUS
    in_door = DOOR[0] + RADIUS <= y <= DOOR[1] - RADIUS
    return in_wall_band and not in_door


def room_of(p: np.ndarray) -> int:
    return int(p[0] > 0.5)


class TwoRoom(PixelEnv):
    max_episode_steps = 100

    def __init__(self, size: int = 64):
        super().__init__(size, action_dim=2, proprio_dim=2)
        centres = (np.arange(size, dtype=np.float32) + 0.5) / size
        self._ys, self._xs = np.meshgrid(centres, centres, indexing="ij")
        wall = (self._xs >= WALL[0]) & (self._xs <= WALL[1])
        wall &= ~((self._ys >= DOOR[0]) & (self._ys <= DOOR[1]))
        self._background = np.where(wall[..., None], WALL_COLOUR, BACKGROUND)
        self.position = np.full(2, 0.25)
        self.goal = np.full(2, 0.75)

    # --- task ---------------------------------------------------------------------------
    def _sample_free(self, rng: np.random.Generator, room: int) -> np.ndarray:
        low = RADIUS if room == 0 else WALL[1] + RADIUS
        high = WALL[0] - RADIUS if room == 0 else 1 - RADIUS
        return np.array([rng.uniform(low, high), rng.uniform(RADIUS, 1 - RADIUS)])

    def _reset_task(self, rng, options):
        cross = options.pop("cross_door", None)
        if options:
            raise ValueError(f"TwoRoom.reset: unknown options {sorted(options)}; valid: "
                             "cross_door")
        if cross is None:
            cross = bool(rng.integers(2))
        start_room = int(rng.integers(2))
        self.position = self._sample_free(rng, start_room)
        goal_room = 1 - start_room if cross else start_room
        while True:
            self.goal = self._sample_free(rng, goal_room)
            if cross or np.linalg.norm(self.goal - self.position) >= 0.2:
                break
        return "cross-door" if cross else "same-room"

    def episode_options(self, index: int) -> dict:
        return {"cross_door": index % 2 == 1}

    def _apply(self, action):
        delta = action.astype(np.float64) * SPEED
        for move in (delta, np.array([delta[0], 0.0]), np.array([0.0, delta[1]])):
            target = self.position + move
            if not blocked(target):
                self.position = target
                return

    def set_position(self, position) -> None:
        """Put the agent at `position` (tests, goal renderings)."""
        position = np.asarray(position, dtype=np.float64)
        if blocked(position):
            raise ValueError(f"TwoRoom: position {position.tolist()} is inside a wall")
        self.position = position

    def proprio(self):
        return self.position.astype(np.float32)

    def goal_proprio(self):
        return self.goal.astype(np.float32)

    def state(self) -> np.ndarray:
        """(x, y) of the agent: the whole state (it has no velocity)."""
        return self.position.astype(np.float64)

    def restore(self, state) -> None:
        self.set_position(state)

    def _set_goal_state(self, state) -> None:
        if blocked(state):
            raise ValueError(f"TwoRoom: goal_state {state.tolist()} is inside a wall")
        self.goal = np.array(state, dtype=np.float64)

    def state_error(self, goal_state) -> float:
        """LeWM's test asks the agent within 16 px of 224 of the goal state's position."""
        return float(np.linalg.norm(self.position - goal_state) / SUCCESS_DISTANCE)

    def success(self) -> bool:
        return self.state_matches(self.goal)

    def expert_action(self, rng):
        """Head for the door while in the other room, then for the goal."""
        p, g = self.position, self.goal
        target = g
        if room_of(p) != room_of(g) and not (WALL[0] - RADIUS < p[0] < WALL[1] + RADIUS):
            side = WALL[0] - RADIUS - 0.02 if room_of(p) == 0 else WALL[1] + RADIUS + 0.02
            door_y = 0.5
            target = (np.array([side, door_y]) if abs(p[1] - door_y) > 0.03
                      else np.array([1 - side, door_y]))
        elif room_of(p) != room_of(g) or (WALL[0] - RADIUS < p[0] < WALL[1] + RADIUS):
            target = np.array([g[0], 0.5]) if abs(g[0] - 0.5) > 0.1 else g
        step = target - p
        norm = np.linalg.norm(step)
        return (step / max(norm, 1e-9) * min(1.0, norm / SPEED)).astype(np.float32)

    # --- pixels ---------------------------------------------------------------------------
    def _render(self, goal: bool) -> np.ndarray:
        x, y = self.goal if goal else self.position
        distance = np.sqrt((self._xs - x) ** 2 + (self._ys - y) ** 2)
        cover = np.clip((RADIUS - distance) * self.size + 0.5, 0.0, 1.0)[..., None]
        image = self._background * (1 - cover) + AGENT_COLOUR * cover
        return image.round().astype(np.uint8)
