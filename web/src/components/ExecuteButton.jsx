import { formatWait } from '../format.js';

/** Starts the job; while rate limited (`retryAt`, ms) it is disabled and says when to retry. */
export function ExecuteButton({ onExecute, disabled = false, busy = false, retryAt = null, now = Date.now() }) {
  const wait = retryAt ? Math.ceil((retryAt - now) / 1000) : 0;
  const limited = wait > 0;
  return (
    <div className="execute">
      <button type="submit" onClick={onExecute} disabled={disabled || busy || limited} aria-busy={busy}>
        {busy ? 'Starting…' : 'Run workflow'}
      </button>
      {limited && (
        <p className="notice" role="status">
          Too many requests. You can try again in {formatWait(wait)}.
        </p>
      )}
    </div>
  );
}
