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
# # 7. Runs you can hold, chains, stage results and readers
#
# So far every `run()` blocked until its job was done. In this notebook you:
#
# 1. **submit** a job and hold its `Run` while it works,
# 2. **chain** three jobs, submitted together, each waiting for the one before,
# 3. read what an **earlier stage** of a run wrote,
# 4. start a job with a **reduce** over an earlier job's results,
# 5. read inputs that are not text lines, with a **reader**,
# 6. and take results into **pandas**.
#
# Everything runs on the local runner, as in notebook 1; on a cluster the same code runs
# unchanged.

# %% [markdown]
# ## The data
#
# A few hundred orders, one JSON object a line, in three files: who ordered, what, and how
# many. The numbers are made up, but always the same.

# %%
import json
import tempfile
from pathlib import Path

workdir = tempfile.TemporaryDirectory(prefix="discodsl-tutorial-")
ORDERS = Path(workdir.name)

CUSTOMERS = ["ana", "ben", "cy", "dee", "eli"]
ITEMS = ["tea", "jam", "bread", "honey"]
for part in range(3):
    lines = []
    for n in range(100):
        order = {
            "customer": CUSTOMERS[(n * 7 + part) % len(CUSTOMERS)],
            "item": ITEMS[(n + part * 3) % len(ITEMS)],
            "quantity": (n * 5 + part) % 4 + 1,
        }
        lines.append(json.dumps(order))
    (ORDERS / f"orders-{part}.jsonl").write_text("\n".join(lines) + "\n")

print((ORDERS / "orders-0.jsonl").read_text().splitlines()[0])

# %% [markdown]
# ## Records that are not lines: readers
#
# By default a map gets each input line as a `str`. `reader=` gives it something else:
# `readers.json_lines()` parses each line as JSON, `readers.csv_rows()` gives CSV rows as
# dicts, `readers.fixed(size)` cuts binary records of a fixed size, and
# `readers.whole_file()` gives each input whole. A reader of your own is a function
# `reader(stream, url)` yielding records. A malformed record fails the task with a
# `MalformedRecord` naming the input, the record and the byte offset (it is not retried:
# the same bytes would fail again).

# %%
from discodsl import job, map, readers, reduce


@map(reader=readers.json_lines())
def quantities(order):
    yield order["item"], order["quantity"]


@reduce(combine=True)
def total(item, counts):
    yield item, sum(counts)


@job(partitions=2)
def items_sold():
    return [quantities, total]


# %% [markdown]
# ## Submit, hold, wait
#
# `submit()` takes what `run()` takes and returns a `Run` at once. The job goes on in the
# background; the `Run` tells its `status` ("active", "ready" or "dead"), its `events()`
# (worded as a Disco master words them), its `counters`, and `wait()` returns the results
# (or raises what `run()` would raise). `run()` is just `submit().wait()`.

# %% tags=["assert-submit"]
sold = items_sold.submit(inputs=sorted(ORDERS.glob("*.jsonl")), progress=False)
results = sold.wait(timeout=300)
print("status:", sold.status)
print(sorted(results))
print("events:", len(sold.events()), "the last:", sold.events()[-1][2])

# %% [markdown]
# ## Chains: results before they exist
#
# A `Run` can be the input of another job before it has finished: the second run waits for
# the first run's results, and fails naming it if it fails. Three jobs submitted together
# make a chain: who bought what, then how many items each customer bought, then the best
# customer.

# %%
from discodsl import stage


@map(reader=readers.json_lines())
def bought(order):
    yield (order["customer"], order["item"]), order["quantity"]


@reduce
def per_pair(pair, counts):
    yield pair, sum(counts)


@map
def per_customer(record):
    (customer, _item), n = record
    yield customer, n


@reduce
def customer_total(customer, counts):
    yield customer, sum(counts)


@stage(grouping="group_all")
def best(records):
    yield max(records, key=lambda kv: (kv[1], kv[0]))


@job(partitions=2)
def pairs():
    return [bought, per_pair]


@job(partitions=2)
def customers():
    return [per_customer, customer_total]


@job
def best_customer():
    return [best]


# %% tags=["assert-chain"]
first = pairs.submit(inputs=sorted(ORDERS.glob("*.jsonl")), progress=False)
second = customers.submit(inputs=first, progress=False)
third = best_customer.submit(inputs=second, progress=False)
print("best customer:", list(third.wait(timeout=300)))
print("statuses:", first.status, second.status, third.status)

# %% [markdown]
# ## What an earlier stage wrote
#
# `results.stage(name)` reads the outputs of any stage of a finished run, as Disco's
# `stageresults` does. Here the map `quantities` wrote its pairs combined per task (the
# `combine=True` of `total` folds them before they are written), so there are fewer of them
# than orders, and they add up to the same total:

# %% tags=["assert-stage-results"]
map_output = list(results.stage("quantities"))
print("pairs the map wrote:", len(map_output), "for", 3 * 100, "orders")
print("same total:", sum(n for _, n in map_output) == sum(n for _, n in results))

# %% [markdown]
# ## A job that starts with a reduce
#
# A job's first stage may be a reduce when its inputs are record files, such as an earlier
# run's results: it groups their pairs by key. Here the per-pair totals of the chain's first
# run are regrouped by pair, to find each pair's count once more (the same numbers: a
# reduce over results that are already reduced changes nothing).

# %% tags=["assert-reduce-only"]
@job
def regroup():
    return [per_pair]


again = regroup.run(inputs=first.wait(), progress=False)
print("same as the first run:", dict(again) == dict(first.wait()))

# %% [markdown]
# ## Into pandas
#
# `results.to_pandas()` gives a DataFrame with `key` and `value` columns (pandas is the
# optional extra `discodsl[pandas]`; without it, the error names the extra to install).

# %% tags=["assert-pandas"]
frame = results.to_pandas().sort_values("key")
print(frame.to_string(index=False))

# %%
for run in (sold, first, second, third):
    run.results().close()
again.close()
workdir.cleanup()

# %% [markdown]
# ## Summary
#
# - `job.submit(...)` returns a `Run`: `status`, `wait(timeout)`, `results()`, `events()`,
#   `kill()`, `counters`. `run()` is `submit().wait()`.
# - A `Run` among `inputs=` makes a chain: the next run waits for it.
# - `results.stage("name")` reads any stage's outputs.
# - A reduce may come first over record files (an earlier job's results, or files Disco's
#   own library wrote).
# - `reader=` reads inputs that are not text lines: `readers.json_lines()`, `csv_rows()`,
#   `fixed(size)`, `whole_file()`, or your own `reader(stream, url)`.
# - `results.to_pandas()` for a notebook's usual next step.
