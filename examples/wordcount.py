"""The README's main example: a word count on the embedded default (no cluster needed)."""

from pathlib import Path

from discodsl import job, map, reduce

HERE = Path(__file__).parent


@map
def words(line):
    for w in line.split():
        yield w, 1


@reduce(combine=True)
def total(word, counts):
    yield word, sum(counts)


@job(partitions=4)
def wordcount():
    return [words, total]


if __name__ == "__main__":
    results = wordcount.run(inputs=[str(HERE / "data" / "*.txt")])
    top = sorted(results, key=lambda kv: (-kv[1], kv[0]))[:10]
    for word, n in top:
        print(f"{n:6d}  {word}")
    print(f"{sum(n for _, n in results)} words, {len(results.to_dict())} distinct")
