"""The replay's analyst teams and how each day's queue is chosen: the top cards by the
served score, plus the lanes that spend part of the day's cards elsewhere."""

from __future__ import annotations

import numpy as np
import pandas as pd


class Team:
    """One simulated analyst team: what it has labelled and when each label is known."""

    def __init__(self, n: int, heldout: int | None) -> None:
        self.known_day = np.full(n, np.inf)  # replay-row index -> day the label is known
        self.heldout = heldout

    def review(self, rows: np.ndarray, day: int, delay: int, scenario: np.ndarray) -> None:
        keep = rows
        if self.heldout is not None:
            keep = rows[scenario[rows] != self.heldout]  # those verdicts never become labels
        self.known_day[keep] = np.minimum(self.known_day[keep], day + delay + 1)

    def labelled_before(self, day: int) -> np.ndarray:
        return np.flatnonzero(self.known_day <= day)


def top_cards(day_rows: np.ndarray, customers: np.ndarray, scores: np.ndarray, k: int):
    """Rows of the k cards with the highest score of the day (all their records that day)."""
    frame = pd.DataFrame({"row": day_rows, "card": customers[day_rows], "s": scores[day_rows]})
    best = frame.groupby("card")["s"].max().nlargest(k).index
    return frame.loc[frame["card"].isin(best), "row"].to_numpy()


def linked_cards(
    today: np.ndarray, customers: np.ndarray, link: np.ndarray, exclude: np.ndarray, k: int
) -> np.ndarray:
    """Rows of up to k cards, not already chosen, that paid today where analysts' confirmed
    frauds are the largest share of the payments (the "linked to confirmed fraud" lane)."""
    if k <= 0:
        return np.empty(0, dtype="int64")
    frame = pd.DataFrame({"row": today, "card": customers[today], "link": link[today]})
    frame = frame.loc[~frame["card"].isin(customers[exclude]) & (frame["link"] > 0)]
    best = frame.groupby("card")["link"].max().nlargest(k).index
    return frame.loc[frame["card"].isin(best), "row"].to_numpy()
