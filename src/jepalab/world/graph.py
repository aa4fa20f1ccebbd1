"""A temporal-distance-shaped cost: how many blocks from here to the goal, read off a graph
of the training data's latents.

Plain LeWM scores a plan by the latent distance to the goal. That distance grows with the
true distance only nearby and says nothing about walls: from the far side of Two-Room's
wall the closest latent to the goal is the wall itself. Here the frames of the training
episodes (one per block) become nodes, linked both ways to the next block of their
episode (weight 1) and to their nearest neighbours in latent space when those lie closer
than half a typical block's step (weight: the distance in block steps), so trajectories
that pass the same place join. Dijkstra from the goal's nearest nodes gives every node its
distance to the goal in blocks, around walls and through doors where the data went.

Both choices were measured on the field itself, against Two-Room's true shortest-path
distance at the nodes (200 episodes, 20 goals that are not the evaluation's), with the
recipe's model (`lewm-two-room`, rollout loss on): rank correlation 0.73 with one-way
edges joined within a fifth of a step, 0.83 two-way, 0.93 two-way within half a step
(0.72 within 0.4 of the goal), and no join through the wall at half a step or even three
quarters. A model trained without the rollout loss has a worse-conditioned latent: at
half a step 850 of 17,809 edges jumped through the wall, which is why `join` stays an
option.

A predicted latent costs the graph distance of its nearest node plus its own latent
distance to the goal in block steps (which alone guides the last stretch).
"""
from __future__ import annotations

import numpy as np
import torch


class TemporalGraph:
    def __init__(self, nodes: torch.Tensor, episode: np.ndarray, *, neighbours: int = 8,
                 join: float = 0.5):
        """nodes (M, D): latents of frames one block apart, in episode order; episode (M,):
        the episode of each."""
        from scipy.sparse import coo_matrix

        self.nodes = nodes.float()
        m = len(nodes)
        same = episode[1:] == episode[:-1]
        steps = (self.nodes[1:] - self.nodes[:-1]).norm(dim=1)[torch.from_numpy(same)]
        self.step = float(steps.median())  # a typical block's move in latent space
        edges = {}  # (i, j) with i < j -> weight in block steps; the graph is undirected

        def link(i: int, j: int, weight: float) -> None:
            key = (min(i, j), max(i, j))
            edges[key] = min(weight, edges.get(key, weight))

        for i in np.nonzero(same)[0].tolist():
            link(i, i + 1, 1.0)
        distances = torch.cdist(self.nodes, self.nodes)
        distances.fill_diagonal_(float("inf"))
        near, index = distances.topk(neighbours, largest=False)
        for i, (d, j) in enumerate(zip(near.tolist(), index.tolist())):
            for dist, other in zip(d, j):
                if dist < join * self.step:
                    link(i, other, max(dist / self.step, 1e-6))  # 0 would be no edge
        (rows, cols), weights = zip(*edges.keys()), list(edges.values())
        self.graph = coo_matrix((weights, (rows, cols)), shape=(m, m)).tocsr()
        self.to_goal = None

    @classmethod
    def from_trajectories(cls, model, path: str, frameskip: int, *, episodes: int = 200,
                          seed: int = 0) -> TemporalGraph:
        """Encode one frame per block of up to `episodes` training episodes (reading only
        those episodes: the whole file can be gigabytes)."""
        from jepalab.data.trajectories import open_trajectories

        with open_trajectories(path) as (f, starts, _):
            rng = np.random.default_rng(seed)
            chosen = np.sort(rng.permutation(len(starts) - 1)[:episodes])
            # whole episodes, strided in memory: h5py's strided reads are as slow as the file
            frames = [f["pixels"][starts[e]:starts[e + 1]][::frameskip] for e in chosen]
            proprio = [f["proprio"][starts[e]:starts[e + 1]][::frameskip] for e in chosen]
        episode = np.concatenate([np.full(len(x), i) for i, x in enumerate(frames)])
        pixels = torch.from_numpy(np.concatenate(frames)).permute(0, 3, 1, 2)
        proprio = torch.from_numpy(np.concatenate(proprio))
        with torch.no_grad():
            latents = torch.cat([model.encode(chunk, own).flatten(1) for chunk, own in
                                 zip(pixels.split(512), proprio.split(512))])
        return cls(latents, episode)

    def set_goal(self, goal: torch.Tensor, anchors: int = 3) -> None:
        """Distances (in blocks) from every node to the goal's `anchors` nearest nodes."""
        from scipy.sparse.csgraph import dijkstra

        near = (self.nodes - goal.flatten().float()).norm(dim=1)
        closest = near.topk(anchors, largest=False).indices.numpy()
        start = near[closest].numpy() / self.step
        reached = dijkstra(self.graph, directed=False, indices=closest)
        self.to_goal = torch.from_numpy((reached + start[:, None]).min(axis=0)).float()
        self.goal = goal.flatten().float()
        unreachable = ~torch.isfinite(self.to_goal)  # nodes with no path: worse than any other
        self.to_goal[unreachable] = self.to_goal[~unreachable].max() + 1

    def cost(self, predicted: torch.Tensor) -> torch.Tensor:
        """predicted (N, H, T, D) -> (N, H): blocks to the goal of each predicted latent."""
        flat = predicted.flatten(2).float()                              # (N, H, T*D)
        nearest = torch.cdist(flat.flatten(0, 1), self.nodes).min(dim=1)
        graph = (self.to_goal[nearest.indices] + nearest.values / self.step).view(flat.shape[:2])
        return graph + (flat - self.goal).norm(dim=2) / self.step
