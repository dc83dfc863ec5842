"""``ipbench leaderboard``: the result store as paper-style tables, plots, token galleries and a
static HTML site.

One job per module: ``collect`` (store -> DataFrames), ``aggregate`` (seeds -> mean ± std),
``reference`` (published numbers), ``table`` (a table as data), ``render`` (a page's tables,
markdown and CSV), ``site`` (HTML), ``plots`` (curves), ``gallery`` (token images), ``build``
(all).
"""
