"""Reading results back: the comparison table, terminal tables and the leaderboard."""
