// The execution document (API.md) advanced by the SSE events that follow it. Pure functions:
// the document fetched from the bridge stays the truth; events only move it forward between
// two fetches, so nothing here decides what the API did not say.

export const TERMINAL = new Set(['completed', 'failed', 'cancelled']);

/** Whether the job has ended (nothing more will happen without a retry). */
export function isTerminal(doc) {
  return Boolean(doc) && TERMINAL.has(doc.status);
}

function withStep(doc, index, change) {
  const key = String(index);
  const checkpoints = { ...(doc.checkpoints || {}) };
  checkpoints[key] = change(checkpoints[key] || { status: 'pending' });
  return { ...doc, checkpoints };
}

function withoutError(entry) {
  const { error, error_type, retry_count, last_attempt, ...rest } = entry;
  return rest;
}

/** The document after one SSE event (`type` is the SSE event name, `data` its JSON). */
export function applyEvent(doc, { type, data }) {
  if (!doc) return doc;
  if (type === 'progress' && data.step != null) {
    const entry = doc.checkpoints?.[String(data.step)];
    if (entry?.status === 'completed' || doc.status === 'completed' || doc.status === 'cancelled') {
      return doc;
    }
    const next = withStep(doc, data.step, (old) => ({
      ...withoutError(old),
      step_name: old.step_name || data.step_name,
      status: 'running',
      progress: data.progress,
      message: data.message,
      ...(data.provider ? { provider: data.provider } : {}),
    }));
    return { ...next, status: 'running', error_info: null, current_step: data.step };
  }
  if (type === 'checkpoint' && data.step != null) {
    return withStep(doc, data.step, (old) => ({
      ...withoutError(old),
      step_name: old.step_name || data.step_name,
      status: 'completed',
      progress: 100,
      output: data.output,
    }));
  }
  if (type === 'error') {
    if (data.error_type === 'cancelled') {
      return { ...doc, status: 'cancelled', can_retry: false };
    }
    const status = data.retryable ? 'pending_retry' : 'failed';
    const error_info = {
      step: data.step,
      error_type: data.error_type,
      retryable: Boolean(data.retryable),
      message: data.error,
      next_retry_at: data.next_retry_at ?? null,
    };
    const next =
      data.step == null
        ? doc
        : withStep(doc, data.step, (old) => ({
            ...old,
            status: data.retryable ? 'failed_retryable' : 'failed',
            error: data.error,
            error_type: data.error_type,
          }));
    return { ...next, status, error_info };
  }
  if (type === 'complete') {
    return { ...doc, status: 'completed', result: data.result, error_info: null, can_retry: false };
  }
  return doc;
}

/** The job's steps in order: `{index, step_name, status, ...checkpoint}`. */
export function stepsOf(doc) {
  const checkpoints = doc?.checkpoints || {};
  return Object.keys(checkpoints)
    .map(Number)
    .sort((a, b) => a - b)
    .map((index) => ({ index, ...checkpoints[String(index)] }));
}

/** The first URL in a step's output that a browser shows as a picture, or null. */
export function thumbnailOf(output) {
  if (!output) return null;
  const urls = Object.entries(output).filter(([key, value]) => key.endsWith('_url') && typeof value === 'string');
  const image = urls.find(([key, value]) => key.includes('image') || /\.(png|jpe?g|webp|gif)(\?|$)/i.test(value));
  return image ? image[1] : null;
}

/** The result's video URL (the seed workflow's `video_url`), or null. */
export function videoOf(result) {
  if (!result) return null;
  if (typeof result.video_url === 'string') return result.video_url;
  const found = Object.entries(result).find(
    ([key, value]) => key.endsWith('_url') && typeof value === 'string' && /\.(mp4|webm|mov)(\?|$)/i.test(value),
  );
  return found ? found[1] : null;
}
