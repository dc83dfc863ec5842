"""``ipbench leaderboard``: the result store as paper-style tables, plots and token galleries.

One job per module: ``collect`` (store -> DataFrames), ``reference`` (published numbers),
``render`` (markdown/CSV), ``plots`` (curves), ``gallery`` (token images), ``build`` (all).
"""
