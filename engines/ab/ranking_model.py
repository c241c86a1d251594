"""Who leads a blind tournament, how sure we are, and which pair to ask next.

A listener compares two takes and is right (picks the truly better one) with probability ``a``
(``listener_accuracy``, 0.7 by default). The unknown is the true order of the candidates, with a
uniform prior over orders; a vote "i over j" multiplies an order's weight by ``a`` when i is above j
in it, else by ``1 - a``. The posterior over orders is sampled with persistent Markov chains
(adjacent swaps, Metropolis), updated after each vote, which gives:

- ``p_best``: the share of chains whose top is each candidate (the leader has the largest);
- the next pair: the one whose expected vote removes most uncertainty (entropy) about which
  candidate is best, i.e. the vote that teaches most about the leader;
- an estimate of the votes left until ``P(leader is best)`` reaches the target.

512 chains, because the tournament stops the first time the estimate crosses the target, which
turns the estimate's noise into over-confidence: with 256 chains, simulated tournaments stopped
at 95% were right in 90-92% of runs; with 512, in 96-99%.

Why not a Laplace-approximated Bradley-Terry posterior: in the 12-candidate, 70%-listener
simulation its P(best) reached 0.8 only after ~140 votes (it spreads belief over every candidate
a vote has not yet pushed far down). Bradley-Terry strengths (:func:`bt_strengths`) are still shown
as a ranking of everyone. Pure numpy; the tournament (:mod:`engines.ab.tournament`) keeps the votes.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

ACCURACY = 0.7
CHAINS = 512
SWEEPS = 6  # Metropolis sweeps (every adjacent swap proposed once) after every vote
BURN_IN = 40

Vote = tuple[int, int, float]  # (i, j, score of i: 1 = i won, 0 = j won, 0.5 = tie)


def wins_matrix(k: int, votes: Sequence[Vote]) -> np.ndarray:
    """``W[i, j]`` = votes for i over j (a tie counts half to each)."""
    w = np.zeros((k, k))
    for i, j, s in votes:
        w[int(i), int(j)] += float(s)
        w[int(j), int(i)] += 1.0 - float(s)
    return w


def entropy(p: np.ndarray) -> float:
    p = np.asarray(p, dtype=np.float64)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


class OrderPosterior:
    """Samples of the candidates' true order given the votes (one row per chain: items best first)."""

    def __init__(self, k: int, accuracy: float = ACCURACY, chains: int = CHAINS, seed: int = 0) -> None:
        if not 0.5 < accuracy < 1.0:
            raise ValueError("listener accuracy must be between 0.5 and 1")
        self.k, self.accuracy = k, accuracy
        self.lam = math.log(accuracy / (1 - accuracy))
        self.rng = np.random.default_rng(seed)
        self.order = np.argsort(self.rng.random((chains, k)), axis=1)  # exact draws from the uniform prior
        self.wins = np.zeros((k, k))

    @classmethod
    def from_votes(cls, k: int, votes: Sequence[Vote], accuracy: float = ACCURACY, seed: int = 0) -> "OrderPosterior":
        post = cls(k, accuracy, seed=seed)
        post.wins = wins_matrix(k, votes)
        post.mix(BURN_IN if votes else 0)
        return post

    def add(self, i: int, j: int, score_i: float, sweeps: int = SWEEPS) -> None:
        self.wins[i, j] += score_i
        self.wins[j, i] += 1.0 - score_i
        self.mix(sweeps)

    def mix(self, sweeps: int) -> None:
        """Metropolis over adjacent swaps; a swap putting b above a changes the log weight by lam*(W[b,a]-W[a,b]).

        A sweep proposes every adjacent swap once: first the pairs at even positions, then at odd ones.
        Pairs in one half share no item, so their accept/reject steps are independent and run at once
        for every chain (k - 1 proposals per chain in two array steps).
        """
        for _ in range(sweeps):
            for first in (0, 1):
                r = np.arange(first, self.k - 1, 2)
                if not len(r):
                    continue
                a, b = self.order[:, r], self.order[:, r + 1]
                delta = self.lam * (self.wins[b, a] - self.wins[a, b])
                ok = np.log(self.rng.random(a.shape)) < delta
                self.order[:, r], self.order[:, r + 1] = np.where(ok, b, a), np.where(ok, a, b)

    @property
    def p_best(self) -> np.ndarray:
        return np.bincount(self.order[:, 0], minlength=self.k) / len(self.order)

    @property
    def leader(self) -> int:
        return int(np.argmax(self.p_best))

    def ranks(self) -> np.ndarray:
        """``ranks[c, item]`` = position of item in chain c (0 = best)."""
        ranks = np.empty_like(self.order)
        ranks[np.arange(len(self.order))[:, None], self.order] = np.arange(self.k)[None, :]
        return ranks

    def pair_gains(self) -> np.ndarray:
        """Expected drop of the entropy of 'who is best' for a vote on each pair ``[i, j]`` (nats)."""
        k, a = self.k, self.accuracy
        ranks = self.ranks()
        above = (ranks[:, :, None] < ranks[:, None, :]).astype(np.float64)  # [s, i, j]
        top = np.eye(k)[self.order[:, 0]]  # [s, m]
        w_i = a * above + (1 - a) * (1 - above)  # likelihood of "i wins" per sample
        p_i = w_i.mean(0)  # [i, j]
        best_i = (w_i.reshape(len(w_i), -1).T @ top).reshape(k, k, k)  # [i, j, m]: mass on "m is best" if i wins
        best_j = top.sum(0) - best_i
        h_now = entropy(self.p_best)

        def ent(mass: np.ndarray) -> np.ndarray:  # entropy along the last axis of unnormalised masses
            p = mass / np.clip(mass.sum(-1, keepdims=True), 1e-300, None)
            return -(p * np.log(np.where(p > 0, p, 1.0))).sum(-1)

        gains = h_now - (p_i * ent(best_i) + (1 - p_i) * ent(best_j))
        np.fill_diagonal(gains, -np.inf)
        return gains

    def next_pair(self, counts: np.ndarray | None = None) -> tuple[int, int]:
        """The pair whose vote is expected to teach most about which candidate is best (fewest meetings on ties)."""
        gains = np.round(self.pair_gains(), 6)
        met = counts if counts is not None else np.zeros((self.k, self.k))
        best = max(((gains[i, j], -met[i, j], -i, -j) for i in range(self.k) for j in range(i + 1, self.k)))
        i, j = -best[2], -best[3]
        lead = self.leader
        return (j, i) if j == lead else (i, j)

    def votes_left(self, target: float) -> int:
        """Estimate of the votes until P(leader is best) reaches ``target``.

        The entropy still to remove (down to "target on the leader, the rest spread evenly") over the
        information the next best vote is expected to give, scaled by ``0.85 n + 10 min(1, n / 15)``:
        fitted on simulated tournaments (12 candidates, a listener right 70% of the time), where the
        plain ratio ran ahead of the votes actually needed early on and short of them near the end.
        """
        p = self.p_best
        if p.max() >= target:
            return 0
        rest = (1 - target) / max(1, self.k - 1)
        h_goal = entropy(np.array([target] + [rest] * (self.k - 1)))
        gain = float(np.max(self.pair_gains()))
        if gain <= 1e-6:
            return 999
        naive = max(0.0, entropy(p) - h_goal) / gain
        return int(min(999, max(1, math.ceil(0.85 * naive + 10 * min(1.0, naive / 15)))))


def bt_strengths(k: int, votes: Sequence[Vote], prior_sd: float = 1.0, iters: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Bradley-Terry strengths at the posterior mode (Gaussian prior) and their standard deviations."""
    theta, prec0 = np.zeros(k), 1.0 / prior_sd ** 2
    w = wins_matrix(k, votes)
    n = w + w.T
    hess = -prec0 * np.eye(k)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(theta[:, None] - theta[None, :])))
        grad = (w - n * p).sum(1) - prec0 * theta
        h = n * p * (1 - p)
        hess = h - np.diag(h.sum(1)) - prec0 * np.eye(k)
        step = np.linalg.solve(hess, grad)
        theta = theta - step
        if np.max(np.abs(step)) < 1e-8:
            break
    return theta, np.sqrt(np.diag(np.linalg.inv(-hess)))


def simulate(k: int = 12, accuracy: float = 0.7, target: float = 0.95, runs: int = 200, seed: int = 0,
             max_votes: int = 250, model_accuracy: float | None = None) -> dict[str, float]:
    """Tournaments against a listener who picks the truly better take with probability ``accuracy``.

    The true order is a hidden random permutation each run; the posterior assumes ``model_accuracy``
    (default: the listener's true accuracy). Returns the share of runs whose final leader is the true
    best, and the mean number of votes.
    """
    rng = np.random.default_rng(seed)
    right, total, capped = 0, 0, 0
    for run in range(runs):
        true_rank = rng.permutation(k)  # 0 = best
        post = OrderPosterior(k, model_accuracy or accuracy, seed=seed * 100_003 + run)
        counts = np.zeros((k, k))
        n = 0
        while post.p_best.max() < target and n < max_votes:
            i, j = post.next_pair(counts)
            correct = rng.random() < accuracy
            i_won = (true_rank[i] < true_rank[j]) == correct
            post.add(i, j, 1.0 if i_won else 0.0)
            counts[i, j] += 1
            counts[j, i] += 1
            n += 1
        right += int(true_rank[post.leader] == 0)
        total += n
        capped += int(n >= max_votes)
    return {"runs": runs, "found_best": right / runs, "mean_votes": total / runs, "capped": capped,
            "all_pairs": k * (k - 1) // 2}
