"""Measuring and improving retrieval on labeled folders: metrics, the comparison sweep, its
leaderboard, and adapters learned from class folders."""
