"""Finish parked steps in process: the parked-steps sensor ticked by hand on a fake clock,
its continuation runs materialized as the daemon would launch them."""

from __future__ import annotations

import dagster as dg

from sensors.parked_steps import make_parked_steps_sensor
from tests.fakes.clock import FakeClock
from wf_assets.factory import build_workflow_assets
from wf_core.specs import WorkflowSpec
from wf_store.predictions import PARKED, PredictionStore

TICK_SECONDS = 5.0


class ParkedDriver:
    """One instance's parked-steps sensor and the runs it asks for."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        specs: dict[str, WorkflowSpec],
        resources: dict,
        clock: FakeClock | None = None,
    ) -> None:
        self.instance = instance
        self.specs = specs
        self.resources = resources
        self.clock = clock or FakeClock.at_wall_time()
        self.sensor = make_parked_steps_sensor(specs, [], self.clock)
        self.launched: set[str] = set()

    @property
    def store(self) -> PredictionStore:
        """The prediction store the resources use."""
        return self.resources["predictions"].store()

    def tick(self) -> list[dg.RunRequest]:
        """One sensor evaluation."""
        context = dg.build_sensor_context(
            instance=self.instance,
            resources={
                "model_provider": self.resources["model_provider"],
                "predictions": self.resources["predictions"],
            },
        )
        return list(self.sensor(context).run_requests or [])

    def execute(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult | None:
        """Run a requested continuation once per run key, as the daemon would."""
        if request.run_key in self.launched:
            return None
        self.launched.add(request.run_key or "")
        spec = next(s for s in self.specs.values() if s.job_name == request.job_name)
        return dg.materialize(
            build_workflow_assets(spec),
            instance=self.instance,
            partition_key=request.partition_key,
            selection=request.asset_selection,
            run_config=request.run_config,
            tags=request.tags,
            resources=self.resources,
            raise_on_error=False,
        )

    def settle(self, job_id: str, rounds: int = 40) -> list[dg.ExecuteInProcessResult]:
        """Tick (advancing the clock) and run continuations until the job parks no more."""
        results = []
        for _ in range(rounds):
            for request in self.tick():
                result = self.execute(request)
                if result is not None:
                    results.append(result)
            if not any(row.state == PARKED for row in self.store.for_job(job_id)) and not [
                r for r in self.store.for_job(job_id) if r.state in ("completed", "handed_off")
            ]:
                return results
            self.clock.advance(TICK_SECONDS)
        raise AssertionError(f"job {job_id} still parked after {rounds} ticks")
