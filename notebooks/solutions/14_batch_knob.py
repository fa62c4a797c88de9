# Solution: predict from a model, then measure. Some of a batch's cost is paid once per batch,
# whatever its size (find_job and finish_pipes: two round trips and commits, the heartbeat, the
# rescue): each of b jobs pays 1/b of it. The rest is paid per job (its lease, its attempt and that
# attempt's foreign-key check, its finish). So ms per job = per_batch / b + per_job: as b grows the
# first part shrinks, the second stays, and jobs/s climbs towards a ceiling of 1 / per_job. At
# b = per_batch / per_job the two parts are equal: jobs/s is half the ceiling, and doubling b from
# there gains a third (2 per_job / 1.5 per_job), each further doubling less. Past that size a
# bigger batch buys little. Two sizes on one worker give the two parts; then the predicted size
# is measured on 1 and 2 workers (try its double yourself). The numbers are this
# machine's, and noisy (a point of 2,000 jobs at thousands of jobs/s lasts under a second).
from pgqueue.bench import databases, inputs, throughput
from pgqueue.bench.report import Report, Throughput, machine

JOBS, WINDOW = inputs.LESSON_JOBS, 2.0  # per point: a few seconds each, on one fresh server for them all


def hardened_runner(batch: int) -> throughput.Runner:
    return throughput.Runner(f"hardened, batch of {batch}", "hardened", batch)


def point(batch: int, workers: int = 1) -> Throughput:
    return throughput.measure(hardened_runner(batch), workers, JOBS, WINDOW)


with databases.own_server() as where:
    small, large = point(1), point(200)
    ms_small, ms_large = (1000 / p.jobs_per_s for p in (small, large))  # ms per job
    per_batch = (ms_small - ms_large) / (1 / small.batch - 1 / large.batch)
    per_job = max(ms_large - per_batch / large.batch, 0.001)  # noise could make it <= 0
    print(f"about {per_batch:.2f} ms per batch, shared by its jobs, and {per_job:.2f} ms per job")
    predicted = min(500, max(2, round(per_batch / per_job)))  # where a bigger batch stops paying
    points = [point(predicted), point(predicted, 2)]
my_batch = predicted  # the exercise's knob, set to the size the model predicts
mine = Report(machine(), {"where": where}, True, [], 0, workers=[1, 2], throughput=points)
print(mine.throughput_table())
expected = 1000 / (per_batch / my_batch + per_job)
measured = mine.jobs_per_s(hardened_runner(my_batch).name, 1)
print(f"one worker, a batch of {my_batch}: predicted {expected:,.0f} jobs/s, measured {measured:,.0f}")
# with two workers they also share the server and the cores, which the model leaves out

measured = {(t.batch, t.workers) for t in mine.throughput}
assert measured == {(my_batch, 1), (my_batch, 2)}, measured
assert all(t.jobs > 0 and t.jobs_per_s > 0 for t in [small, large, *mine.throughput])
