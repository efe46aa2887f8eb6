function when(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

/** The caller's past jobs, newest first; a job opens with its checkpoints. */
export function JobHistory({
  jobs,
  workflows = [],
  onOpen,
  hasMore = false,
  onLoadMore = () => {},
  loading = false,
  activeJobId = null,
}) {
  const names = Object.fromEntries(workflows.map((w) => [w.id, w.name]));
  return (
    <section className="job-history" aria-labelledby="history-heading" aria-busy={loading}>
      <h2 id="history-heading">Your jobs</h2>
      {!jobs.length && !loading && <p className="muted">No jobs yet.</p>}
      <ul>
        {jobs.map((job) => (
          <li key={job.job_id} data-job-id={job.job_id}>
            <button
              type="button"
              className="history-item"
              aria-current={job.job_id === activeJobId ? 'true' : undefined}
              onClick={() => onOpen(job)}
            >
              <span className="history-name">{names[job.workflow_id] || job.workflow_id}</span>
              <span className={`badge badge-${job.status}`}>{job.status.replaceAll('_', ' ')}</span>
              <span className="muted history-time">{when(job.created_at)}</span>
            </button>
          </li>
        ))}
      </ul>
      {hasMore && (
        <button type="button" className="secondary" onClick={onLoadMore} disabled={loading}>
          Load more jobs
        </button>
      )}
    </section>
  );
}
