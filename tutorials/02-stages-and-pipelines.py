# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 2. Stages and pipelines
#
# Map and reduce are two kinds of **stage**. A job is a pipeline of stages, as many as you
# need, each reading what the stage before it wrote. In this notebook you build a three-stage
# pipeline over a few CSV files of sales:
#
# 1. **parse** (`@map`): a CSV line in, a `(product, revenue)` pair out,
# 2. **revenue** (`@reduce`): the total revenue per product,
# 3. **top3** (`@stage(grouping="group_all")`): the three best sellers, computed once, over
#    everything.
#
# and you learn what a stage's **grouping** says (which records each of its tasks gets) and
# what **partitions** are.

# %% [markdown]
# ## The data
#
# Four shops, one file each, a line per product and day: `day,product,quantity,price_cents`,
# after a header line. The numbers are made up, but always the same.

# %%
import tempfile
from pathlib import Path

workdir = tempfile.TemporaryDirectory(prefix="discodsl-tutorial-")
SALES = Path(workdir.name)

PRICES = {"apples": 120, "bread": 250, "cheese": 690, "dates": 430,
          "eggs": 310, "figs": 540, "grapes": 380, "honey": 820}
SHOPS = ["north", "south", "east", "west"]

for shop_number, shop in enumerate(SHOPS):
    lines = ["day,product,quantity,price_cents"]
    for day in range(1, 31):
        for product_number, (product, price) in enumerate(PRICES.items()):
            quantity = (day * (product_number + 3) + shop_number * 5) % 9 + 1
            lines.append(f"{day},{product},{quantity},{price}")
    (SALES / f"sales-{shop}.csv").write_text("\n".join(lines) + "\n")

print("\n".join((SALES / "sales-north.csv").read_text().splitlines()[:4]))

# %% [markdown]
# ## Three stages
#
# `@stage` is the general stage: its function is called **once per task** with an iterator
# over all the records of that task, and yields `(key, value)` pairs. (`@map` and `@reduce`
# are the special cases "once per record" and "once per key".) Its `grouping` decides which
# records a task gets; `group_all` gives one task everything, which is what a top-N needs.
#
# To see the groupings at work, every stage also gets an `init` hook: a function called once
# at the start of each task (with the job's `params` if it takes an argument, else with
# none; see notebook 3). Ours calls `count()`, which adds to a named counter; the
# counters of all tasks are added up and come back with the results.

# %%
import heapq

from discodsl import count, job, map, reduce, stage


def count_tasks(name):
    """An init hook that counts the tasks of a stage."""

    def started():
        count(f"{name} tasks")

    return started


@map(init=count_tasks("parse"))
def parse(line):
    day, product, quantity, price = line.split(",")
    if day != "day":  # skip the header line
        yield product, int(quantity) * int(price)


@reduce(init=count_tasks("revenue"))
def revenue(product, amounts):
    yield product, sum(amounts)


@stage(grouping="group_all", init=count_tasks("top3"))
def top3(records):
    best = heapq.nlargest(3, records, key=lambda pair: pair[1])
    yield from enumerate(best, 1)  # (rank, (product, cents))


@job(partitions=2)
def best_sellers():
    return [parse, revenue, top3]


best_sellers

# %% [markdown]
# As always, the stages are plain functions, so each can be tried alone. A `@stage` function
# takes an iterable of records:

# %%
print(list(parse("3,figs,2,540")), list(parse("day,product,quantity,price_cents")))
print(list(top3([("apples", 5), ("bread", 9), ("cheese", 7), ("dates", 1)])))

# %% tags=["assert-top3"]
results = best_sellers.run(inputs=SALES)

for rank, (product, cents) in sorted(results):
    print(f"{rank}. {product:8} {cents / 100:10,.2f}")

# %% [markdown]
# ## Groupings: what a task gets
#
# Disco runs every stage as a set of **tasks**, and a stage's grouping says how the outputs
# of the previous stage (or the job's inputs, for the first stage) are dealt out to them.
# Every output record carries a **label**, the number of the partition it belongs to.
#
# | grouping | tasks of the stage | each task reads | typical use |
# |---|---|---|---|
# | `split` | one per input | that one input | maps: per-record work (the default of `@map`) |
# | `group_label` | one per label (partition) | every record with that label, from all inputs | reduces (the default of `@reduce` and `@stage`) |
# | `group_all` | exactly one | everything | a global top-N, a total, a final sort |
# | `group_node` | one per node | everything stored on that node | per-node work on a cluster, e.g. a pre-aggregation |
# | `group_node_label` | one per label on each node | that label's records on that node | a per-node combine before a cluster-wide reduce |
#
# The local runner is a single node, so there `group_node` behaves like `group_all` and
# `group_node_label` like `group_label`; the difference shows on a cluster.
#
# The counters show it for our job: `parse` (split) ran one task per file, `revenue`
# (group_label) one per partition that got records, `top3` (group_all) just one.

# %% tags=["assert-task-counts"]
results.counters

# %% [markdown]
# The local runner cuts big files into line-aligned ranges when there are too few inputs to
# keep every core busy, so on big data a `split` stage may run more tasks than there are
# files. Tasks of one stage run in parallel, on as many worker processes as there are cores;
# the next stage starts when they have all finished.
#
# ## Partitions
#
# Between a stage and a following `group_label` stage (a reduce, usually), the records are
# split into `partitions` parts by key. Every key goes to exactly one partition, by a stable
# hash of the key, the same in every process: that is what guarantees a reduce sees *all*
# the values of its keys. Each partition that gets records is one reduce task (one that
# gets none has no task and no result file, as on Disco), so `partitions` is how far the
# reduce side can run in parallel.
#
# Options given to `run()` override the job's for that run. With four partitions, `revenue`
# runs four tasks and the answer does not change:

# %% tags=["assert-partitions"]
four = best_sellers.run(inputs=SALES, partitions=4)
print(four.counters)
print("same top 3:", sorted(four) == sorted(results))

# %% [markdown]
# How many partitions? One per core is a sound start for the local runner; on a cluster, a
# few per core of the whole cluster, so a slow task does not hold everybody up. Each task
# costs a process start, so thousands of tiny partitions are slower, not faster.
#
# ## A pipeline has rules
#
# The stages are checked when the job is declared: two stages cannot share a name, since
# the name is how Disco tells them apart. (A reduce may come first, in a job whose inputs
# are record files such as an earlier job's results: it groups their pairs by key.) The
# error says what to write instead:

# %% tags=["assert-pipeline-rule"]
from discodsl import JobError

try:

    @job
    def twice():
        return [parse, parse, revenue]

except JobError as error:
    print(error)

# %%
results.close()
four.close()
workdir.cleanup()

# %% [markdown]
# ## Summary
#
# - A job is a list of stages; each stage reads what the one before it wrote.
# - `@map`: once per record. `@reduce`: once per key. `@stage`: once per task.
# - The grouping says what a task reads: `split` (one input), `group_label` (one partition),
#   `group_all` (everything), and per node on a cluster.
# - `partitions=` sets how many parts keys are split into, so how many reduce tasks run.
#
# Next, **3. Fast and correct**: combiners, custom partitioners, parameters and counters.
