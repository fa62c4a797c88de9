# Solution: predict from a model, then measure. Some of a batch's cost is paid once per batch,
# whatever its size (find_job and finish_pipes: two round trips and commits, the heartbeat, the
# rescue): each of b jobs pays 1/b of it. The rest is paid per job (its lease, its attempt and that
# attempt's foreign-key check, its finish). So ms per job = per_batch / b + per_job: as b grows the
# first part shrinks, the second stays, and jobs/s climbs towards a ceiling of 1 / per_job. At
# b = per_batch / per_job the two parts are equal: jobs/s is half the ceiling, and doubling b from
# there gains a third (2 per_job / 1.5 per_job), each further doubling less. Past that size a
# bigger batch buys little. Two sizes on one worker give the two parts; then the predicted size
# and its double are measured on 1 and 2 workers. The numbers are this machine's, and noisy (a
# point of 3,000 jobs at thousands of jobs/s lasts about a second).
from pgqueue import bench


def hardened_runner(batch: int) -> bench.Runner:
    return bench.Runner(f"hardened, batch of {batch}", "hardened", "hardened", batch)


small, large = hardened_runner(1), hardened_runner(200)
model = bench.run(
    quick=True, scenarios=("throughput",), runners=(small, large), workers=[1], jobs=3000, window=2.0
)
ms_small, ms_large = (1000 / model.jobs_per_s(r.name, 1) for r in (small, large))  # ms per job
per_batch = (ms_small - ms_large) / (1 / small.batch - 1 / large.batch)
per_job = max(ms_large - per_batch / large.batch, 0.001)  # noise could make it <= 0
print(f"about {per_batch:.2f} ms per batch, shared by its jobs, and {per_job:.2f} ms per job")

my_batch = min(500, max(2, round(per_batch / per_job)))
mine = bench.run(
    quick=True, scenarios=("throughput",), runners=(hardened_runner(my_batch), hardened_runner(2 * my_batch)),
    workers=[1, 2], jobs=3000, window=2.0,
)  # fmt: skip
print(mine.throughput_table())
for b in (my_batch, 2 * my_batch):
    predicted = 1000 / (per_batch / b + per_job)
    measured = mine.jobs_per_s(hardened_runner(b).name, 1)
    print(f"one worker, a batch of {b}: predicted {predicted:,.0f} jobs/s, measured {measured:,.0f}")
# with two workers they also share the server and the cores, which the model leaves out

measured = {(t.batch, t.workers) for t in mine.throughput}
assert measured == {(b, n) for b in (my_batch, 2 * my_batch) for n in (1, 2)}, measured
assert all(t.jobs > 0 and t.jobs_per_s > 0 for t in model.throughput + mine.throughput)
