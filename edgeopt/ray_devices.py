"""Device jobs as Ray tasks: each holds its device's resource (`device:NAME`, of which the
node driving the device offers 1), so one device is measured by one job at a time while
different devices are measured in parallel.

A device task takes no CPU: a build waiting for a core never holds up a measurement, and
a remote device (driven over SSH) costs its node little. It is not retried: the device's
resource lives on one node, and a job retried after that node died would wait forever.
"""

from __future__ import annotations

from edgeopt.executor import DeviceJob, DeviceRun, TaskFailure, run_job
from edgeopt.ray_cluster import device_resource, gather, node_name, outcome


def device_task(job: DeviceJob) -> DeviceRun:
    """On the node holding the device: the job, recording where and when it ran."""
    return run_job(job, node_name())


def submit(jobs: list[DeviceJob]) -> dict:
    """Each job as a task holding its device; ObjectRef → the job."""
    import ray

    task = ray.remote(num_cpus=0, max_retries=0)(device_task)
    return {task.options(resources={device_resource(job.device): 1}).remote(job): job for job in jobs}


def run_on_ray(jobs: list[DeviceJob]) -> list[DeviceRun]:
    """Every job, on the nodes that offer its device; in the order given. A job that failed
    ends the run: its EdgeoptError as it was raised, or the cluster's failure in one line."""
    pending = submit(jobs)
    order = list(pending)
    results = {}

    def done(job: DeviceJob, ref) -> None:
        results[ref] = outcome(ref)

    gather(dict(pending), done)
    runs = []
    for ref in order:
        result = results[ref]
        if isinstance(result, TaskFailure):
            result.reraise(f"device {pending[ref].device}")
        runs.append(result)
    return runs
