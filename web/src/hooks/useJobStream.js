// Follows one job: the execution document first, then its Server-Sent Events; polling the
// execution route when the stream cannot be had. Components get plain state to render.
import { useCallback, useEffect, useRef, useState } from 'react';
import { applyEvent, isTerminal } from '../jobState.js';

const EVENT_TYPES = ['progress', 'checkpoint', 'error', 'complete'];
const IDLE = { job: null, connection: 'idle', error: null };

/**
 * `useJobStream(jobId, {api})` → `{job, connection, error, refresh, resume}`.
 *
 * - `job` is the execution document (API.md) moved forward by the stream's events; every
 *   checkpoint, error and completion fetches the document again, which stays the truth.
 * - The stream is an `EventSource` on `api.streamUrl(jobId)` (`?access_token=`): the browser
 *   reconnects by itself, sending `Last-Event-ID`, and the bridge replays only what was
 *   missed. Its heartbeats are comments, which keep the connection open but never reach
 *   script; so a stream quiet for `staleMs` is checked by fetching the document once.
 * - The stream closed for good (an HTTP error) or failing `maxStreamFailures` times in a row,
 *   or no EventSource at all: the hook polls the execution route every `pollMs` instead.
 * - It stops once the job has ended; `resume()` follows it again (after a retry).
 */
export function useJobStream(
  jobId,
  {
    api,
    EventSourceImpl = globalThis.EventSource,
    pollMs = 2000,
    staleMs = 30000,
    maxStreamFailures = 3,
    now = Date.now,
  } = {},
) {
  const [state, setState] = useState(IDLE);
  const [generation, setGeneration] = useState(0);
  const controls = useRef({ refresh: async () => {} });
  const followed = useRef(null);

  useEffect(() => {
    if (!jobId) {
      followed.current = null;
      setState(IDLE);
      return undefined;
    }
    let stopped = false; // the effect was cleaned up
    let finished = false; // the job ended, or the hook gave up (401)
    let doc = null;
    let source = null;
    let pollTimer = null;
    let staleTimer = null;
    let lastEventAt = now();
    // Events since the oldest fetch in flight, re-applied to whatever that fetch returns.
    let log = [];
    let logBase = 0;
    let inFlight = 0;
    let fetchSeq = 0;

    const publish = (patch) => {
      if (!stopped) setState((old) => ({ ...old, ...patch }));
    };

    const finish = (connection = 'closed') => {
      finished = true;
      if (source) source.close();
      source = null;
      clearTimeout(pollTimer);
      clearInterval(staleTimer);
      publish({ connection });
    };

    const refresh = async () => {
      const seq = ++fetchSeq;
      const from = logBase + log.length;
      inFlight += 1;
      try {
        const fetched = await api.execution(jobId);
        if (stopped || seq !== fetchSeq) return;
        doc = log.slice(from - logBase).reduce(applyEvent, fetched);
        publish({ job: doc, error: null });
        if (isTerminal(doc) && !finished) finish();
      } catch (error) {
        if (stopped) return;
        publish({ error });
        // Not signed in, or no such job: asking again cannot help.
        if (error?.status === 401 || error?.status === 404) finish('closed');
      } finally {
        inFlight -= 1;
        if (inFlight === 0) {
          logBase += log.length;
          log = [];
        }
      }
    };
    controls.current = { refresh };

    const startPolling = () => {
      if (stopped || finished || pollTimer) return;
      publish({ connection: 'polling' });
      const tick = async () => {
        await refresh();
        if (!stopped && !finished) pollTimer = setTimeout(tick, pollMs);
      };
      pollTimer = setTimeout(tick, pollMs);
    };

    const onEvent = (type, message) => {
      if (stopped || finished) return;
      lastEventAt = now();
      let data;
      try {
        data = JSON.parse(message.data);
      } catch {
        return;
      }
      log.push({ type, data });
      if (doc) doc = applyEvent(doc, { type, data });
      publish({ job: doc, connection: 'sse' });
      if (type === 'complete') {
        if (source) source.close();
        source = null;
        refresh();
      } else if (type === 'checkpoint' || type === 'error') {
        // A non-retryable error may be history (a replay before a retry's events): the
        // document says whether the job has really ended.
        refresh();
      }
    };

    const openStream = async () => {
      if (!EventSourceImpl) {
        startPolling();
        return;
      }
      let url;
      try {
        url = await api.streamUrl(jobId);
      } catch {
        startPolling();
        return;
      }
      if (stopped || finished) return;
      const closedState = EventSourceImpl.CLOSED ?? 2;
      let failures = 0;
      source = new EventSourceImpl(url);
      source.onopen = () => {
        failures = 0;
        publish({ connection: 'sse' });
      };
      for (const type of EVENT_TYPES) {
        source.addEventListener(type, (message) => onEvent(type, message));
      }
      source.onerror = () => {
        if (!source || finished) return;
        failures += 1;
        if (source.readyState === closedState || failures >= maxStreamFailures) {
          source.close();
          source = null;
          clearInterval(staleTimer);
          startPolling();
        } else {
          publish({ connection: 'reconnecting' });
        }
      };
      lastEventAt = now();
      staleTimer = setInterval(
        () => {
          if (source && now() - lastEventAt >= staleMs) {
            lastEventAt = now();
            refresh();
          }
        },
        Math.max(250, staleMs / 2),
      );
    };

    if (followed.current !== jobId) {
      followed.current = jobId;
      setState({ ...IDLE, connection: 'connecting' });
    }
    (async () => {
      await refresh();
      if (stopped || finished) return;
      if (doc) openStream();
      else startPolling();
    })();

    return () => {
      stopped = true;
      if (source) source.close();
      clearTimeout(pollTimer);
      clearInterval(staleTimer);
    };
    // `api` and the options are fixed for the life of a page; a new job id restarts.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [jobId, generation]);

  const refresh = useCallback(() => controls.current.refresh(), []);
  const resume = useCallback(() => setGeneration((g) => g + 1), []);
  return { ...state, refresh, resume };
}
