import { useCallback, useEffect, useRef, useState } from 'react';

/** Each job once, at its first (newest) place: a page may repeat a job (see the README). */
function distinct(jobs) {
  const seen = new Set();
  return jobs.filter((job) => !seen.has(job.job_id) && seen.add(job.job_id));
}

/** The caller's jobs from `/workflows/jobs`, a page at a time: `{jobs, hasMore, loadMore, reload}`. */
export function useJobHistory(api, { limit = 10, enabled = true } = {}) {
  const [state, setState] = useState({ jobs: [], cursor: null, loading: false, error: null });
  const latest = useRef(0);

  const load = useCallback(
    async (cursor) => {
      const request = ++latest.current;
      setState((old) => ({ ...old, loading: true }));
      try {
        const page = await api.jobs({ limit, cursor });
        if (request !== latest.current) return;
        setState((old) => ({
          jobs: distinct(cursor ? [...old.jobs, ...page.jobs] : page.jobs),
          cursor: page.next_cursor || null,
          loading: false,
          error: null,
        }));
      } catch (error) {
        if (request === latest.current) setState((old) => ({ ...old, loading: false, error }));
      }
    },
    [api, limit],
  );

  useEffect(() => {
    if (enabled) load(null);
  }, [enabled, load]);

  return {
    jobs: state.jobs,
    loading: state.loading,
    error: state.error,
    hasMore: Boolean(state.cursor),
    loadMore: () => load(state.cursor),
    reload: () => load(null),
  };
}
