"""Reacher: dm_control's two-link planar arm (suite "reacher", task "easy") seen from above.

Physics: dm_control's own model and `Physics` (0.02 s per MuJoCo step). One env step holds
the action for 2 MuJoCo steps (0.04 s), as stable-worldmodel's DMControlWrapper does.
Action: the two joint torques in [-1, 1] (shoulder, wrist; dm_control's action spec).
Proprio: the joint angles (shoulder wrapped to [-pi, pi), wrist within +-160 degrees) and
the joint velocities, (4,).
Goal: a random arm configuration (shoulder uniform on the circle, wrist uniform in its
limits, as dm_control randomises joints); the target sphere (radius 0.05, the "easy" size)
sits at that configuration's fingertip, and "goal" is a rendering of the arm there. The
target is not drawn (as in stable-worldmodel's "qpos_match" task): drawn, a 3 px ball in a
frame where the arm is 1-2 px wide, it is what an encoder learns to see, and since it sits
in the same place in every frame of an episode and in its goal, the latent distance to the
goal ignored the arm (rank correlation with the joint-angle distance -0.05 to 0.03 over 10
goals, and planning no better than random torques). Start: another random configuration
at rest, redrawn until it does not already succeed.
`options={"start": (shoulder, wrist), "goal": (shoulder, wrist)}` fixes either.
Success (dm_control's "easy" test, reward 1): the fingertip within target size + finger
size = 0.06 of the target centre, tested on the current state. (stable-worldmodel's
"qpos_match" task, which LeWorldModel evaluates on, instead asks each joint to be within 0.05
rad of the goal's, with a 0.015 target: `state_matches`, used for goals that are recorded
states, world/protocol.py.)
Budget: 50 env steps (2 s), LeWorldModel's evaluation budget for Reacher (its env steps are
these: 2 MuJoCo steps each). The noisy expert (PD on the joint angles toward the goal
configuration, noise 0.1) succeeded on 20/20 seeds (0-19; 200/200 on 0-199) within it,
median 14.5 steps, slowest 22; uniformly random torques succeed in about 15% of episodes.
Pixels: dm_control's "fixed" camera, straight down on the whole arena. Shadows,
multisampling, floor reflections and the skybox are off: the arm looks the same
bar edge antialiasing, the walls lose their glints, and a 64 px render takes ~0.5 ms instead
of ~13 ms with Mesa's software EGL. Rendering is headless: MUJOCO_GL defaults to "egl".
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("MUJOCO_GL", "egl")  # before dm_control or mujoco is first imported

import numpy as np  # noqa: E402
from dm_control import mujoco as dm_mujoco  # noqa: E402
from dm_control.suite import reacher as suite_reacher  # noqa: E402

from jepalab.envs.base import PixelEnv, wrap_angle  # noqa: E402

TARGET_SIZE = 0.05                  # dm_control suite reacher `_BIG_TARGET` (task "easy")
ACTION_REPEAT = 2                   # MuJoCo steps of 0.02 s per env step
WRIST_LIMIT = np.deg2rad(160.0)     # the wrist joint's range in reacher.xml
CAMERA = "fixed"                    # reacher.xml's top-down camera at height 0.75
RENDER_FLAGS = {"reflection": False, "skybox": False}
EXPERT_GAINS = (4.0, 0.4)           # PD: torque = kp * angle error - kd * velocity
EXPERT_NOISE = 0.1                  # std of the Gaussian added to the expert's torques
QPOS_TOLERANCE = 0.05               # stable-worldmodel's "qpos_match" success, per joint (rad)


def joint_error(qpos, goal) -> np.ndarray:
    """(..., 2) joint angles minus the goal's, the shoulder's taken the short way round."""
    error = np.asarray(qpos, dtype=np.float64) - np.asarray(goal, dtype=np.float64)
    error[..., 0] = wrap_angle(error[..., 0])
    return error


def random_configuration(rng: np.random.Generator) -> np.ndarray:
    """(shoulder, wrist): shoulder uniform on the circle, wrist uniform in its limits."""
    return np.array([rng.uniform(-np.pi, np.pi), rng.uniform(-WRIST_LIMIT, WRIST_LIMIT)])


def check_configuration(value, name: str) -> np.ndarray:
    configuration = np.asarray(value, dtype=np.float64)
    if configuration.shape != (2,) or not np.isfinite(configuration).all():
        raise ValueError(f"Reacher: {name} must be two finite joint angles (shoulder, wrist) in "
                         f"radians, got {value!r}")
    if abs(configuration[1]) > WRIST_LIMIT:
        raise ValueError(f"Reacher: {name} wrist angle {configuration[1]:.3f} is outside its "
                         f"limits [-{WRIST_LIMIT:.3f}, {WRIST_LIMIT:.3f}] rad (+-160 degrees)")
    return configuration


class Reacher(PixelEnv):
    max_episode_steps = 50

    def __init__(self, size: int = 64):
        super().__init__(size, action_dim=2, proprio_dim=4)
        self.physics = suite_reacher.Physics.from_xml_string(*suite_reacher.get_model_and_assets())
        # Read when the camera below makes the GL context; too late to change afterwards.
        self.physics.model.vis.quality.shadowsize = 0
        self.physics.model.vis.quality.offsamples = 0
        self.physics.named.model.geom_size["target", 0] = TARGET_SIZE
        self.physics.named.model.geom_rgba["target", 3] = 0.0  # not drawn (module docstring)
        self.finger_size = float(self.physics.named.model.geom_size["finger", 0])
        self._camera = None
        try:
            self._camera = dm_mujoco.Camera(self.physics, size, size, camera_id=CAMERA)
        except Exception as e:
            backend = getattr(sys.modules.get("dm_control._render"), "BACKEND", None)
            raise RuntimeError(
                f"Reacher: could not make an OpenGL context ({type(e).__name__}: {e}). Rendering "
                f"is headless through EGL, but dm_control chose {backend!r}: set MUJOCO_GL=egl "
                "before anything imports dm_control or mujoco, e.g. `MUJOCO_GL=egl python ...`; "
                "without a GPU, EGL needs Mesa's libEGL (apt-get install libegl1)") from e
        self.goal_configuration = np.zeros(2)

    # --- task ---------------------------------------------------------------------------
    def _reset_task(self, rng, options):
        start, goal = options.pop("start", None), options.pop("goal", None)
        if options:
            raise ValueError(f"Reacher.reset: unknown options {sorted(options)}; valid: start, "
                             "goal (each a (shoulder, wrist) pair of angles in radians)")
        self.physics.reset()
        self._set_goal(random_configuration(rng) if goal is None
                       else check_configuration(goal, "options['goal']"))
        if start is not None:
            self.set_configuration(check_configuration(start, "options['start']"))
        else:
            while True:
                self.set_configuration(random_configuration(rng))
                if not self.success():
                    break
        return "reach"

    def set_configuration(self, angles, velocities=(0.0, 0.0)) -> None:
        """Put the arm at joint `angles` (shoulder, wrist) with joint `velocities` (tests,
        goal renderings)."""
        self.physics.data.qpos[:] = angles
        self.physics.data.qvel[:] = velocities
        self.physics.forward()

    def _apply(self, action):
        self.physics.set_control(action)
        self.physics.step(ACTION_REPEAT)

    def proprio(self):
        angles = self.physics.data.qpos.copy()
        angles[0] = wrap_angle(angles[0])
        return np.concatenate([angles, self.physics.data.qvel]).astype(np.float32)

    def goal_proprio(self):
        angles = self.goal_configuration.copy()
        angles[0] = wrap_angle(angles[0])
        return np.concatenate([angles, np.zeros(2)]).astype(np.float32)

    def state(self) -> np.ndarray:
        """(shoulder, wrist, their velocities): the whole state."""
        return np.concatenate([self.physics.data.qpos, self.physics.data.qvel]).astype(np.float64)

    def restore(self, state) -> None:
        self.set_configuration(state[:2], state[2:4])

    def _set_goal_state(self, state) -> None:
        self._set_goal(np.array(state[:2]))  # recorded: may sit a hair past the wrist's limit

    def _set_goal(self, configuration: np.ndarray) -> None:
        """The goal configuration, and the (undrawn) target at its fingertip; leaves the arm
        there (a reset then sets the start)."""
        self.goal_configuration = configuration
        self.set_configuration(configuration)
        fingertip = self.physics.named.data.geom_xpos["finger", :2].copy()
        self.physics.named.model.geom_pos["target", :2] = fingertip

    def state_error(self, goal_state) -> float:
        """stable-worldmodel's "qpos_match" asks each joint within 0.05 rad of the goal's (the
        shoulder's error taken the short way round the circle): the larger joint error."""
        error = joint_error(self.physics.data.qpos, goal_state[:2])
        return float(np.abs(error).max() / QPOS_TOLERANCE)

    def success(self) -> bool:
        return bool(self.physics.finger_to_target_dist() <= TARGET_SIZE + self.finger_size)

    def expert_action(self, rng, noise: float = EXPERT_NOISE):
        """PD control on the joint angles toward the goal configuration (the shoulder turns
        the short way round), plus Gaussian noise of std `noise`, clipped to [-1, 1]."""
        kp, kd = EXPERT_GAINS
        error = self.goal_configuration - self.physics.data.qpos
        error[0] = wrap_angle(error[0])
        torque = kp * error - kd * self.physics.data.qvel
        if noise > 0:
            torque = torque + rng.normal(0.0, noise, 2)
        return np.clip(torque, -1.0, 1.0).astype(np.float32)

    # --- pixels ---------------------------------------------------------------------------
    def _render(self, goal: bool) -> np.ndarray:
        if not goal:
            return self._render_now()
        state = self.physics.get_state()
        self.set_configuration(self.goal_configuration)
        pixels = self._render_now()
        self.physics.set_state(state)
        self.physics.forward()
        return pixels

    def _render_now(self) -> np.ndarray:
        if self._camera is None:
            raise RuntimeError("Reacher: the environment is closed; make a new one")
        # The camera hands back a view of its own buffer, which the next render overwrites.
        return self._camera.render(render_flag_overrides=RENDER_FLAGS).copy()

    def close(self) -> None:
        """Free the renderer and the MuJoCo data (the env cannot be used afterwards)."""
        if self._camera is not None:
            self._camera.scene.free()
            self._camera = None
            self.physics.free()
        super().close()
