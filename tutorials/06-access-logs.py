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
# # 6. Access logs, from end to end
#
# A real data task: the access logs of a few web servers. The questions are the usual ones
# after a bad day:
#
# - How many lines could not even be read?
# - Which URLs are requested most?
# - What share of the requests failed with a server error (status 500 or above), hour by
#   hour, and which hours were worst?
#
# Two jobs answer them: the first parses and tallies the logs; the second runs on the
# *results of the first* to rank the hours.
#
# Each line of a log is in the **Common Log Format**:
#
# ```
# 10.2.181.47 - ana [14/Mar/2024:14:05:33 +0000] "GET /docs/faq.html HTTP/1.1" 200 5120
# ```
#
# the client's address, its identity (always `-`), the user, the time, the request line
# (method, URL, protocol), the status code, and the size of the response in bytes (`-`
# when there is no body).

# %% [markdown]
# ## The logs
#
# `data/make_logs.py`, next to this notebook, writes them: four servers, 3,000 lines each,
# one day. It is seeded, so it writes the same bytes every time, and it plants a few facts
# (a most requested URL, a worst hour, a known number of malformed lines) and prints its
# answer key as JSON, so we can check the jobs' answers at the end. Run it as a command, into
# a temporary directory:

# %%
import json
import subprocess
import sys
import tempfile
from pathlib import Path

workdir = tempfile.TemporaryDirectory(prefix="discodsl-tutorial-")
LOGS = Path(workdir.name) / "logs"

made = subprocess.run(
    [sys.executable, "data/make_logs.py", str(LOGS), "--files", "4", "--lines", "3000"],
    capture_output=True, text=True, check=True,
)
answer_key = json.loads(made.stdout)

for path in sorted(LOGS.iterdir()):
    print(f"{path.name}: {path.stat().st_size:,} bytes")
print((LOGS / "web-1.log").read_text().splitlines()[0])

# %% [markdown]
# ## Parsing a line
#
# A regular expression with a named group per field. A line it does not match is
# **malformed**: a log that was cut short, a status that is not a number, a stray message
# from the server. Dropping such lines silently would hide how many there are, so the map
# counts them with `count("malformed")` and moves on; a job should not die on a bad line of
# a big log, and the counter says how big the problem is.
#
# For every good line the map yields two pairs with **tagged keys**: `("url", url)` with a
# 1 to count requests per URL, and `("hour", hour)` with `(1, 1 if it failed else 0)`, so
# one reduce tallies both. Keys of one reduce must be comparable to be sorted: tuples of
# strings are, whatever the tag.

# %%
import re
from datetime import datetime

from discodsl import count, job, map, reduce, stage

CLF = re.compile(
    r'(?P<host>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]+)\] '
    r'"(?P<method>[A-Z]+) (?P<url>\S+) (?P<protocol>[^"]+)" (?P<status>\d{3}) (?P<size>\d+|-)$'
)


@map
def parse_hit(line):
    hit = CLF.match(line)
    if hit is None:
        count("malformed")
        return
    when = datetime.strptime(hit["time"], "%d/%b/%Y:%H:%M:%S %z")
    failed = int(hit["status"]) >= 500
    yield ("url", hit["url"]), 1
    yield ("hour", when.strftime("%Y-%m-%d %H:00")), (1, int(failed))


# %% [markdown]
# Try it on a good line and a bad one before running anything:

# %%
good = '10.0.0.1 - - [14/Mar/2024:14:05:33 +0000] "GET /docs/faq.html HTTP/1.1" 503 120'
print(list(parse_hit(good)))
print(list(parse_hit("upstream timed out (110: Connection timed out)")))

# %% [markdown]
# ## The first job: tally
#
# The reduce adds up: a count per URL, and `(requests, errors)` per hour. Its output has
# the shape of its input values in both cases, so it can be its own combiner
# (`combine=True`), and the map tasks write one pair per URL and per hour instead of two per
# line.


# %% tags=["assert-malformed"]
@reduce(combine=True)
def tally(key, values):
    kind, _ = key
    if kind == "url":
        yield key, sum(values)
    else:
        requests = errors = 0
        for seen, failed in values:
            requests += seen
            errors += failed
        yield key, (requests, errors)


@job(partitions=4)
def traffic():
    return [parse_hit, tally]


stats = traffic.run(inputs=LOGS)
print("malformed lines:", stats.counters["malformed"])

# %% [markdown]
# ## Top URLs
#
# There are only a few distinct URLs, so the results are small enough to sort here:

# %% tags=["assert-top-urls"]
hits = {url: n for (kind, url), n in stats if kind == "url"}
top_urls = sorted(hits.items(), key=lambda pair: (-pair[1], pair[0]))[:5]
for url, n in top_urls:
    print(f"{n:6,}  {url}")

# %% [markdown]
# ## Error rate per hour

# %% tags=["assert-hours"]
per_hour = {hour: value for (kind, hour), value in stats if kind == "hour"}
for hour, (requests, errors) in sorted(per_hour.items()):
    rate = errors / requests
    bar = "#" * round(rate * 100)
    print(f"{hour}  {requests:5} requests {errors:4} errors {rate:6.1%}  {bar}")

# %% [markdown]
# ## The second job: rank the hours, on the first job's results
#
# The results of a job can be the inputs of the next: `run(inputs=stats)`. Each record is
# then a `(key, value)` pair as the first job wrote it, not a line of text. The second job's
# map keeps the hour records and computes their error rate; a `group_all` stage sorts them
# all, worst first. On a cluster the first job's results stay on the nodes that wrote them;
# nothing comes back through this notebook.


# %% tags=["assert-ranking"]
@map
def error_rate(record):
    (kind, hour), value = record
    if kind == "hour":
        requests, errors = value
        yield hour, (errors / requests, errors, requests)


@stage(grouping="group_all")
def rank(records):
    ranked = sorted(records, key=lambda pair: (-pair[1][0], pair[0]))
    for place, (hour, (rate, errors, requests)) in enumerate(ranked, 1):
        yield place, (hour, round(rate, 4), errors, requests)


@job
def worst_hours():
    return [error_rate, rank]


ranking = worst_hours.run(inputs=stats)
for place, (hour, rate, errors, requests) in sorted(ranking)[:3]:
    print(f"{place}. {hour}  {rate:6.1%}  ({errors} of {requests} requests failed)")

# %% [markdown]
# ## Check the answers
#
# The generator's answer key against the jobs' answers. On real logs there is no answer
# key; planting known facts in made-up data of the same shape is how you test a job before
# you trust it with the real thing.

# %% tags=["assert-answer-key"]
worst_hour = sorted(ranking)[0][1][0]
planted_hour = f"2024-03-14 {answer_key['worst_hours'][0]:02d}:00"
checks = {
    "malformed lines": (stats.counters["malformed"], answer_key["malformed"]),
    "top URL": (top_urls[0][0], answer_key["top_url"]),
    "its hits": (top_urls[0][1], answer_key["hits"][answer_key["top_url"]]),
    "worst hour": (worst_hour, planted_hour),
}
for what, (found, planted) in checks.items():
    verdict = "ok" if found == planted else "WRONG"
    print(f"{what:16} found {found!s:30} planted {planted!s:30} {verdict}")
assert all(found == planted for found, planted in checks.values())

# %%
ranking.close()
stats.close()
workdir.cleanup()

# %% [markdown]
# ## Summary
#
# - Count what you skip: `count("malformed")` in the map, `results.counters` afterwards.
# - Tagged keys let one reduce compute several tallies in one pass over the data.
# - A job's results are the next job's inputs: `job2.run(inputs=results_of_job1)`.
# - Test a job on made-up data with planted facts before you trust its answers.
