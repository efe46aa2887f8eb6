"""The GraphQL documents the Dagster client sends, apart from the client (as
`dagster_graphql` keeps its `client_queries.py`). Documents with one aliased field per
job, step or cancel mark are built for their counts, and cached."""

from __future__ import annotations

import functools

# A job's cancel mark is looked for among its newest observations on that asset.
MARK_LOOKUP_LIMIT = 5
RUN_FIELDS = "runId status creationTime updateTime startTime endTime tags { key value }"
VERSION = "{ version }"

JOB_NAMES_DOCUMENT = """
query JobNames($selector: RepositorySelector!) {
  repositoryOrError(repositorySelector: $selector) {
    __typename ... on Repository { jobs { name } }
  }
}
"""


@functools.lru_cache(maxsize=8)
def snapshot_document(marks: int) -> str:
    """The job query, with one aliased cancel-mark lookup per workflow's first step."""
    params = "".join(f", $m{i}: [String!]!" for i in range(marks))
    lookups = "".join(
        f"""
  m{i}: assetOrError(assetKey: {{path: $m{i}}}) {{
    ... on Asset {{ assetObservations(partitions: [$job], limit: {MARK_LOOKUP_LIMIT}) {{
      description }} }}
  }}"""
        for i in range(marks)
    )
    return f"""
query Job($tags: [ExecutionTag!], $job: String!{params}) {{
  runsOrError(filter: {{tags: $tags}}) {{
    __typename ... on PythonError {{ message }}
    ... on Runs {{ results {{
      {RUN_FIELDS} runConfigYaml
      assetMaterializations {{
        assetKey {{ path }} partition timestamp
        metadataEntries {{ label ... on JsonMetadataEntry {{ jsonString }} }}
      }}
    }} }}
  }}{lookups}
}}"""


@functools.lru_cache(maxsize=32)
def snapshots_document(jobs: int, steps: int, marks: int, configs: bool = False) -> str:
    """Many jobs' snapshots: each job's runs (aliased j0..), the materializations of
    every step asset (k0..) and the observations of every cancel-mark asset (m0..) for
    all the jobs' partitions."""
    params = "".join(
        ([", $jobTag: String!"] if jobs else [])
        + ([", $jobs: [String!]!"] if steps or marks else [])
        + [f", $j{i}: String!" for i in range(jobs)]
        + [f", $k{i}: [String!]!" for i in range(steps)]
        + [f", $m{i}: [String!]!" for i in range(marks)]
    )
    extra = " runConfigYaml" if configs else ""
    runs = "".join(
        f"""
  j{i}: runsOrError(filter: {{tags: [{{key: $jobTag, value: $j{i}}}]}}) {{
    __typename ... on PythonError {{ message }}
    ... on Runs {{ results {{ {RUN_FIELDS}{extra} }} }}
  }}"""
        for i in range(jobs)
    )
    materializations = "".join(
        f"""
  k{i}: assetOrError(assetKey: {{path: $k{i}}}) {{
    ... on Asset {{ assetMaterializations(partitions: $jobs) {{
      runId assetKey {{ path }} partition timestamp
      metadataEntries {{ label ... on JsonMetadataEntry {{ jsonString }} }}
    }} }}
  }}"""
        for i in range(steps)
    )
    observations = "".join(
        f"""
  m{i}: assetOrError(assetKey: {{path: $m{i}}}) {{
    ... on Asset {{ assetObservations(partitions: $jobs) {{ partition description }} }}
  }}"""
        for i in range(marks)
    )
    return f"""
query PageSnapshots{f"({params[2:]})" if params else ""} {{{runs}{materializations}{observations}
}}"""


ADD_PARTITION = """
mutation Add($selector: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $selector, partitionsDefName: $name, partitionKey: $key) {
    __typename ... on PythonError { message } ... on UnauthorizedError { message }
    ... on DuplicateDynamicPartitionError { partitionName }
  }
}"""
DELETE_PARTITION = """
mutation Del($selector: RepositorySelector!, $name: String!, $key: String!) {
  deleteDynamicPartitions(repositorySelector: $selector, partitionsDefName: $name,
                          partitionKeys: [$key]) { __typename }
}"""
TERMINATE = """
mutation Stop($runId: String!) { terminateRun(runId: $runId) { __typename } }"""
LAUNCH = """
mutation Launch($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
  }
}"""
REPORT_OBSERVATION = """
mutation Mark($params: ReportRunlessAssetEventsParams!) {
  reportRunlessAssetEvents(eventParams: $params) { __typename }
}"""
USER_JOBS = f"""
query Jobs($tags: [ExecutionTag!], $limit: Int, $cursor: String) {{
  runsOrError(filter: {{tags: $tags}}, limit: $limit, cursor: $cursor) {{
    __typename ... on Runs {{ results {{ {RUN_FIELDS} }} }} ... on PythonError {{ message }}
  }}
}}"""
RUN_LOGS = """
query Logs($runId: ID!, $after: String) {
  logsForRun(runId: $runId, afterCursor: $after) {
    __typename
    ... on EventConnection {
      cursor
      events {
        __typename
        ... on MessageEvent { message timestamp stepKey level }
      }
    }
  }
}"""
