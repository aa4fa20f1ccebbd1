"""The anchors' protocol: starts and goals drawn from held-out expert episodes, the goal 25
steps ahead; their success tests; a replay of the expert's own actions reaches the goal."""
import math

import h5py
import numpy as np
import pytest

from jepalab.config import ConfigError
from jepalab.data.images import DataError
from jepalab.envs import make
from jepalab.envs.base import wrap_angle
from jepalab.envs.collect import collect
from jepalab.world.evaluate import Agent, PlanSettings, folder_name, protocol_settings
from jepalab.world.planners import parse_options
from jepalab.world.protocol import ExpertGoals, check_not_trained_on

pytestmark = pytest.mark.xdist_group("protocol")  # module fixtures: built once

ENVS = ("two-room", "pusht", "reacher")


@pytest.fixture(scope="module")
def expert(tmp_path_factory):
    """Three short noisy-expert episodes of each environment."""
    root = tmp_path_factory.mktemp("expert")
    return {name: collect(name, root / f"{name}.h5", episodes=3, steps=40,
                          policy="noisy-expert", seed=7, env_kwargs={"size": 16},
                          show_progress=False, noise=0.2) for name in ENVS}


def test_starts_leave_room_for_the_goal_and_goals_are_25_steps_ahead(expert):
    goals = ExpertGoals.sample(expert["pusht"], "pusht", episodes=20, goal_offset=25, seed=0)
    with h5py.File(expert["pusht"]) as f:
        states, starts = f["state"][:], f["episode_starts"][:]
    episode = np.searchsorted(starts, goals.rows, side="right") - 1
    assert (goals.rows + 25 < starts[episode + 1]).all()        # the goal is in the episode
    np.testing.assert_array_equal(goals.starts, states[goals.rows])
    np.testing.assert_array_equal(goals.goals, states[goals.rows + 25])
    assert len(set(goals.rows)) == 20                            # without replacement
    again = ExpertGoals.sample(expert["pusht"], "pusht", episodes=20, goal_offset=25, seed=0)
    np.testing.assert_array_equal(again.rows, goals.rows)       # seeded
    other = ExpertGoals.sample(expert["pusht"], "pusht", episodes=20, goal_offset=25, seed=1)
    assert not np.array_equal(other.rows, goals.rows)
    # 3 episodes of 41 frames hold 3 * 16 rows with a goal 25 steps ahead
    with pytest.raises(DataError, match="only 48 rows lie at least 25 steps"):
        ExpertGoals.sample(expert["pusht"], "pusht", episodes=49, goal_offset=25, seed=0)


def test_bad_expert_files_are_refused(expert, tmp_path):
    with pytest.raises(DataError, match="holds 'pusht' episodes, not 'reacher'"):
        ExpertGoals.sample(expert["pusht"], "reacher", episodes=2, goal_offset=25, seed=0)
    old = tmp_path / "old.h5"  # a file from before states were written
    with h5py.File(expert["two-room"]) as f, h5py.File(old, "w") as g:
        for key in ("pixels", "actions", "proprio", "episode_starts"):
            g.create_dataset(key, data=f[key][:])
        g.attrs.update(f.attrs)
    with pytest.raises(DataError, match="no 'state' dataset"):
        ExpertGoals.sample(old, "two-room", episodes=2, goal_offset=25, seed=0)
    with pytest.raises(ConfigError, match="the file the model was trained on"):
        check_not_trained_on(expert["two-room"], str(expert["two-room"]))
    with pytest.raises(ConfigError, match="needs --expert-data"):
        protocol_settings("lewm").validate()
    with pytest.raises(ConfigError, match="--goal-offset must be >= 1"):
        protocol_settings("lewm", expert_data="x.h5", goal_offset=0).validate()


def test_protocol_defaults_are_the_anchors():
    lewm = protocol_settings("lewm", expert_data="x.h5", execute=None, cost=None)
    assert (lewm.cost, lewm.execute, lewm.action_block) == ("last", 5, "distinct")
    ours = protocol_settings("jepalab", execute=None)
    assert (ours.cost, ours.execute, ours.action_block) == ("sum", 1, "repeat")
    assert protocol_settings("lewm", expert_data="x", cost="sum").cost == "sum"
    assert PlanSettings().protocol == "jepalab"
    # LeWM's CEM (stable-worldmodel's CEMSolver) has no floor under its std; ours keeps 0.05
    assert lewm.planner_options == {"min_std": 0.0}
    assert Agent(None, lewm, 2, 5).planner.min_std == 0.0
    assert Agent(None, ours, 2, 5).planner.min_std == 0.05
    given = protocol_settings("lewm", expert_data="x", planner_options={"samples": 400})
    assert given.planner_options == {"min_std": 0.0, "samples": 400}
    assert protocol_settings("lewm", expert_data="x", planner="mppi").planner_options == {}
    assert parse_options("cem", ["min_std=0"]) == {"min_std": 0.0}
    with pytest.raises(ConfigError, match="min_std must be a non-negative"):
        parse_options("cem", ["min_std=-1"])
    with pytest.raises(ConfigError, match="samples must be a positive"):
        parse_options("cem", ["samples=0"])


def test_plans_with_different_settings_get_different_folders():
    """`jepalab plan`'s default --out names every setting off the protocol's default, so a
    second plan with other settings never overwrites the first's plan.json."""
    assert folder_name("two-room", protocol_settings("jepalab")) == \
        "plan-two-room-jepalab-cem-sum-repeat"
    assert folder_name("pusht", protocol_settings("lewm", expert_data="data/x.h5", horizon=2)) \
        == "plan-pusht-lewm-cem-last-distinct-h2-on-x"  # execute = horizon is lewm's default
    assert folder_name("pusht", protocol_settings("lewm", expert_data="y.h5")).endswith("-on-y")
    floor = protocol_settings("lewm", expert_data="y.h5", planner_options={"min_std": 0.05})
    assert folder_name("pusht", floor).endswith("-min_std0.05-on-y")  # lewm's own 0 unnamed
    variants = [{}, {"horizon": 2}, {"execute": 2}, {"seed": 1}, {"episodes": 10},
                {"budget": 80}, {"goal_offset": 20}, {"planner_options": {"samples": 400}},
                {"planner_options": {"samples": 400, "elites": 10}}, {"cost": "last"},
                {"action_block": "distinct"}, {"compile": True}, {"planner": "mppi"}]
    names = [folder_name("two-room", protocol_settings("jepalab", **given)) for given in variants]
    assert len(set(names)) == len(names), names
    assert names[-6].endswith("-samples400") and names[-2].endswith("-compiled")
    assert names[-1].startswith("plan-two-room-jepalab-mppi")


@pytest.mark.parametrize("name", ENVS)
def test_replaying_the_experts_actions_reaches_the_goal(expert, name):
    """The simulator restarts from a recorded state: the recorded actions lead it to the
    goal state 25 steps later, and the goal image is that state's frame."""
    env = make(name, size=16)
    goals = ExpertGoals.sample(expert[name], name, episodes=5, goal_offset=25, seed=0)
    with h5py.File(expert[name]) as f:
        actions, pixels, proprio = f["actions"][:], f["pixels"][:], f["proprio"][:]
    for i, row in enumerate(goals.rows):
        obs, info = env.reset(seed=0, options=goals.options(i))
        assert info["category"] == "expert"
        np.testing.assert_array_equal(obs["pixels"], pixels[row])
        np.testing.assert_array_equal(obs["goal"], pixels[row + 25])
        np.testing.assert_allclose(obs["proprio"], proprio[row], atol=1e-6)
        np.testing.assert_allclose(obs["goal_proprio"], proprio[row + 25], atol=1e-6)
        for step in range(25):
            *_, info = env.step(actions[row + step])
        assert info["success"] or env.succeeded(), (name, row)
        np.testing.assert_allclose(env.state()[:2], goals.goals[i][:2], atol=0.02)
    if hasattr(env, "close"):
        env.close()


def test_a_drawn_goals_proprio_is_the_pose_its_image_shows():
    """Under jepalab's own resets the goal's proprio is where the goal image draws the agent,
    at rest; the observation carries it beside the agent's own."""
    wheres = {"two-room": lambda env: env.goal,
              "pusht": lambda env: env.goal_agent_position(),
              "reacher": lambda env: wrap_angle(env.goal_configuration)}
    for name, where in wheres.items():
        env = make(name, size=16)
        obs, _ = env.reset(seed=3)
        assert env.observation_space.contains(obs), name
        pose = np.asarray(where(env), dtype=np.float32)
        np.testing.assert_allclose(obs["goal_proprio"][:len(pose)], pose, atol=1e-6)
        assert not obs["goal_proprio"][len(pose):].any(), name
        obs, *_ = env.step(env.action_space.sample())
        np.testing.assert_allclose(obs["goal_proprio"][:len(pose)], pose, atol=1e-6)
        if hasattr(env, "close"):
            env.close()


def test_pusht_success_is_the_anchors_state_test():
    env = make("pusht", size=16)
    env.reset(seed=0)
    goal = env.state()
    assert env.state_matches(goal)
    unit = 1 / 512
    shifted = goal.copy()
    shifted[0] += 15 * unit                       # agent 15 away, T 10 away: norm 18 < 20
    shifted[3] += 10 * unit
    assert env.state_matches(shifted)
    assert env.state_error(shifted) == pytest.approx(math.hypot(15, 10) / 20)
    shifted[2] += 10 * unit                       # and T 10 more: norm 21.2 > 20
    assert not env.state_matches(shifted)
    assert env.state_error(shifted) == pytest.approx(math.hypot(15, 10, 10) / 20)
    turned = goal.copy()
    turned[4] += math.pi / 9 - 0.01
    assert env.state_matches(turned)
    assert env.state_error(turned) == pytest.approx(1 - 0.01 / (math.pi / 9))
    turned[4] += 0.02
    assert not env.state_matches(turned)
    turned = goal.copy()
    turned[4] += 2 * math.pi                      # a whole turn is no turn
    assert env.state_matches(turned)


def test_reacher_success_is_every_joint_within_005_rad():
    env = make("reacher", size=16)
    env.reset(seed=0)
    goal = env.state()
    for error, matches in ((0.04, True), (0.06, False)):
        for joint in (0, 1):
            moved = goal.copy()
            moved[joint] += error
            assert env.state_matches(moved) is matches
            assert env.state_error(moved) == pytest.approx(error / 0.05)   # the larger joint
    around = goal.copy()
    around[0] += 2 * math.pi - 0.01               # the shoulder goes the short way round
    assert env.state_matches(around)
    env.close()


def test_two_room_success_is_16_px_of_224():
    env = make("two-room", size=16)
    env.reset(seed=0)
    goal = env.state()
    assert env.state_matches(goal + [0.07, 0]) and not env.state_matches(goal + [0.072, 0])
    assert env.state_error(goal + [0.03, 0.04]) == pytest.approx(0.05 / (16 / 224))


def test_reset_to_states_checks_its_input():
    env = make("two-room", size=16)
    with pytest.raises(ValueError, match="start_state and goal_state go together"):
        env.reset(options={"start_state": [0.2, 0.2]})
    with pytest.raises(ValueError, match="goal_state must be 2 finite numbers"):
        env.reset(options={"start_state": [0.2, 0.2], "goal_state": [0.2, np.nan]})
    with pytest.raises(ValueError, match="inside a wall"):
        env.reset(options={"start_state": [0.2, 0.2], "goal_state": [0.5, 0.1]})
    env.reset(options={"start_state": [0.2, 0.2], "goal_state": [0.2, 0.25]})
    assert env.succeeded()                          # 0.05 apart: already there
    env.reset(seed=1)                              # a plain reset forgets the goal state
    assert env.succeeded() == env.success()
