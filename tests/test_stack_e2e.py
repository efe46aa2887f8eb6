"""End to end: a real dagster-webserver and dagster-daemon run one img-edit-to-video job."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import imageio_ffmpeg
import pytest

from runtime.stack import DagsterStack
from wf_assets.asset_keys import asset_key_for
from wf_core.job_ids import new_job_id
from wf_core.settings import REPO_ROOT
from wf_core.specs import WorkflowSpec, load_specs
from wf_core.tags import JOB_ID, LAUNCHED_BY, PARTITION, USER, WORKFLOW

pytestmark = [pytest.mark.stack, pytest.mark.timeout(180)]

WORKFLOW_ID = "img-edit-to-video"
RUNS_QUERY = """
query Runs($filter: RunsFilter) { runsOrError(filter: $filter) { __typename
  ... on Runs { results { runId jobName status tags { key value } } } } }
"""


@dataclass(frozen=True)
class FinishedJob:
    """One job launched through GraphQL and waited for."""

    job_id: str
    run_id: str
    status: dg.DagsterRunStatus


@pytest.fixture(scope="module")
def spec() -> WorkflowSpec:
    """The workflow under test."""
    return load_specs()[WORKFLOW_ID]


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MEDIA_DIR of the stack."""
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, media_dir: Path) -> Iterator[DagsterStack]:
    """One webserver + daemon on a fresh DAGSTER_HOME for the whole module."""
    home = tmp_path_factory.mktemp("dagster_home")
    env = {"MEDIA_DIR": str(media_dir), "LOCAL_PROVIDER_LATENCY": "0"}
    with DagsterStack(home, env=env, timeout=90) as running:
        yield running


@pytest.fixture(scope="module")
def finished_job(stack: DagsterStack, spec: WorkflowSpec) -> FinishedJob:
    """The one job of this module, run to a terminal status."""
    job_id = new_job_id()
    run_id = stack.launch_job(spec, job_id, REPO_ROOT / "samples" / "sample.jpg", user="e2e")
    return FinishedJob(job_id, run_id, stack.wait_for_run(run_id, timeout=90))


def test_job_materializes_every_step_and_a_playable_video(
    stack: DagsterStack, spec: WorkflowSpec, media_dir: Path, finished_job: FinishedJob
) -> None:
    assert finished_job.status == dg.DagsterRunStatus.SUCCESS
    checkpoints = {}
    for step in spec.steps:
        records = stack.instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=asset_key_for(spec, step.name),
                asset_partitions=[finished_job.job_id],
            ),
            limit=1,
        ).records
        assert records, f"no materialization of {step.name} for {finished_job.job_id}"
        materialization = records[0].asset_materialization
        assert records[0].run_id == finished_job.run_id
        checkpoints[step.name] = materialization.metadata["checkpoint"].value
    output = checkpoints["video_generation"]["output"]
    assert output["format"] == "mp4"
    video = media_dir / f"{output['public_id']}.mp4"
    assert video == media_dir / "jobs" / finished_job.job_id / "video_generation.mp4"
    assert video.is_file()
    frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(video))
    assert frames > 1 and seconds > 0


def test_run_is_listed_over_graphql_with_our_tags(
    stack: DagsterStack, spec: WorkflowSpec, finished_job: FinishedJob
) -> None:
    assert stack.client().get_run_status(finished_job.run_id) == dg.DagsterRunStatus.SUCCESS
    data = stack.graphql(
        RUNS_QUERY, {"filter": {"tags": [{"key": JOB_ID, "value": finished_job.job_id}]}}
    )
    runs = data["runsOrError"]["results"]
    assert [run["runId"] for run in runs] == [finished_job.run_id]
    assert runs[0]["jobName"] == spec.job_name
    assert runs[0]["status"] == "SUCCESS"
    tags = {tag["key"]: tag["value"] for tag in runs[0]["tags"]}
    assert tags[PARTITION] == finished_job.job_id
    assert tags[JOB_ID] == finished_job.job_id
    assert tags[WORKFLOW] == WORKFLOW_ID
    assert tags[USER] == "e2e"
    assert tags[LAUNCHED_BY] == "dagster-stack"
