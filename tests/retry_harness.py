"""Drive the retry sensor against a real instance: real runs that really fail and retry.

The sensor reads a fake clock that starts at the real time and moves only when a
test moves it; the runs' failure tags carry the real time they failed at.
"""

from __future__ import annotations

import dagster as dg

from sensors.retry_sensor import make_retry_sensor
from tests.conftest import SAMPLE_IMAGE, Workbench
from tests.fakes.clock import FakeClock
from wf_assets.asset_keys import asset_key_for
from wf_assets.factory import build_workflow_assets, build_workflow_job
from wf_assets.job_runs import load_job_state
from wf_assets.resume import ensure_partition
from wf_core import tags as t
from wf_core.job_ids import new_job_id
from wf_core.job_state import JobState
from wf_core.retry_policy import RetrySettings, next_retry_at
from wf_core.run_config import build_run_config
from wf_core.specs import WorkflowSpec

FAST = RetrySettings(
    backoff_base=0.4,
    backoff_cap=2.0,
    quota_cooldown=1.0,
    quota_cooldown_cap=8.0,
    rate_limit_default=1.0,
    auth_check_interval=0.0,
)
# How far before a scheduled retry the harness checks that nothing is launched yet.
JUST_BEFORE = 0.001


class RetryHarness:
    """Start jobs, tick the sensor as the daemon would, and execute what it asks for."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        bench: Workbench,
        specs: dict,
        settings: RetrySettings = FAST,
        clock: FakeClock | None = None,
        **provider_config,
    ) -> None:
        self.instance = instance
        self.bench = bench
        self.specs = specs
        self.settings = settings
        self.clock = clock or FakeClock.at_wall_time()
        self.provider_config = provider_config
        jobs = [build_workflow_job(spec) for spec in specs.values()]
        self.sensor = make_retry_sensor(specs, jobs, settings, self.clock)
        self.cursor: str | None = None
        self.launched_keys: set[str] = set()

    def resources(self) -> dict:
        """The resources runs and the sensor get (provider config can change mid-test)."""
        return self.bench.resources(**self.provider_config)

    def start(self, spec: WorkflowSpec, options: dict | None = None) -> str:
        """Run a new job of `spec` to its end (success or failure); returns its job id."""
        job_id = new_job_id()
        ensure_partition(self.instance, job_id)
        dg.materialize(
            build_workflow_assets(spec),
            instance=self.instance,
            partition_key=job_id,
            resources=self.resources(),
            raise_on_error=False,
            run_config=build_run_config(spec, options, str(SAMPLE_IMAGE)),
            tags=t.job_tags(spec.id, job_id, "user-1", "test"),
        )
        return job_id

    def tick(self) -> list[dg.RunRequest]:
        """One sensor evaluation, keeping its cursor as the daemon does."""
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            resources={
                "model_provider": self.resources()["model_provider"],
                "predictions": self.resources()["predictions"],
            },
        )
        result = self.sensor(context)
        self.cursor = result.cursor
        return list(result.run_requests or [])

    def retry_at(self, spec: WorkflowSpec, job_id: str) -> float | None:
        """When the retry policy lets the job run again (None: it waits on a condition)."""
        return next_retry_at(spec, self.state(spec, job_id), self.settings)

    def tick_when_due(self, spec: WorkflowSpec, job_id: str) -> list[dg.RunRequest]:
        """Tick just before the job's scheduled retry (it must not go), then at it.

        Returns the requests of the tick at the scheduled time; what the early tick
        asked for other jobs is dropped, and the sensor asks for it again.
        """
        due = self.retry_at(spec, job_id)
        assert due is not None, f"job {job_id} waits on a condition, not a time"
        if self.clock() < due:
            self.clock.advance_to(due - JUST_BEFORE)
            early = [r for r in self.tick() if r.tags[t.JOB_ID] == job_id]
            assert early == [], f"job {job_id} retried {due - self.clock():.3f} s early"
            self.clock.advance_to(due)
        return self.tick()

    def execute(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        """Run what the sensor asked for, once per run key, as the daemon would."""
        assert request.run_key not in self.launched_keys, f"duplicate {request.run_key}"
        self.launched_keys.add(request.run_key)
        spec = self.specs[request.tags[t.WORKFLOW]]
        assert set(request.asset_selection) <= {asset_key_for(spec, s.name) for s in spec.steps}
        return dg.materialize(
            build_workflow_assets(spec),
            instance=self.instance,
            partition_key=request.partition_key,
            selection=request.asset_selection,
            run_config=request.run_config,
            tags=request.tags,
            resources=self.resources(),
            raise_on_error=False,
        )

    def state(self, spec: WorkflowSpec, job_id: str) -> JobState:
        """The job's derived state."""
        return load_job_state(self.instance, spec, job_id)

    def materializations(self, spec: WorkflowSpec, step: str, job_id: str) -> int:
        """How many times a step was materialized for a job."""
        return len(
            self.instance.fetch_materializations(
                dg.AssetRecordsFilter(
                    asset_key=asset_key_for(spec, step), asset_partitions=[job_id]
                ),
                limit=100,
            ).records
        )
