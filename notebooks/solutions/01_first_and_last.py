# Solution: the first step has no previous process, the last step no next one.
from pgqueue.queues import labs

labs.reset("notify-listen", upto="pipelines", examples=True)
ends = labs.frame("notify-listen", """
    SELECT pipe_id,
           max(process_name) FILTER (WHERE previous_process_name IS NULL) AS first_process,
           max(process_name) FILTER (WHERE next_process_name IS NULL)     AS last_process
      FROM process_neighbours
     GROUP BY pipe_id
     ORDER BY pipe_id
""")
print(ends)
assert ends["first_process"].tolist() == ["first_process", "second_process"]
assert ends["last_process"].tolist() == ["third_process", "report_process"]
