"""The graph cost: distances in blocks along the data, around a wall the latents cannot see."""
import numpy as np
import torch

from jepalab.world.graph import TemporalGraph


def corridor():
    """Two episodes on a U: one walks up x=0 from y=0 to y=4, the other walks back down x=1
    from y=4 (they meet at the top, (0,4) and (1,4) being 1 apart). The bottoms (0,0) and
    (1,0) are 1 apart too: as latents they look as close as the top, but the data never
    crossed there."""
    up = [(0.0, float(y)) for y in range(5)]
    top = [(0.5, 4.0)]  # a frame between the two: the two walks meet through it
    down = [(1.0, float(y)) for y in range(4, -1, -1)]
    nodes = torch.tensor(up + top + down)
    episode = np.array([0] * 5 + [1] * 6)
    return nodes, episode


def test_distances_follow_the_data_not_the_latent_shortcut():
    nodes, episode = corridor()
    graph = TemporalGraph(nodes, episode, join=0.6)
    assert graph.step == 1.0
    graph.set_goal(torch.tensor([1.0, 0.0]), anchors=1)  # bottom of the second walk
    # back along the second walk (4 blocks), through the top frame (two joins of half a
    # step each: latents within 0.6 of a step), then down the first walk
    assert np.allclose(graph.to_goal[5:].tolist(), [4.5, 4.0, 3.0, 2.0, 1.0, 0.0])
    assert np.allclose(graph.to_goal[:5].tolist(), [9.0, 8.0, 7.0, 6.0, 5.0])
    # a predicted latent at the bottom of the first walk costs its way round the U, not
    # its latent distance to the goal (1)
    predicted = torch.tensor([[0.0, 0.0], [1.0, 1.0]]).view(1, 2, 1, 2)
    assert np.allclose(graph.cost(predicted).tolist(), [[9.0 + 1.0, 1.0 + 1.0]])


def test_edges_are_two_way_and_joins_keep_their_shortest_weight():
    nodes, episode = corridor()
    graph = TemporalGraph(nodes, episode, join=0.6)
    dense = graph.graph.toarray()
    assert dense[0, 1] == 1.0 and dense[1, 0] == 0.0  # stored once, read undirected
    assert dense[4, 5] == 0.5   # a join
    assert dense[5, 6] == 0.5   # temporal (1) and a join (0.5): the shorter, not their sum
    assert (dense > 0).sum() == 10
