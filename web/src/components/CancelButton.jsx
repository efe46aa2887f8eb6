const STOPPABLE = new Set(['pending', 'running', 'pending_retry']);

/** Stops a pending, running or waiting job (API.md: POST /workflows/cancel). */
export function CancelButton({ status, onCancel, busy = false }) {
  if (!STOPPABLE.has(status)) return null;
  return (
    <button type="button" className="secondary" onClick={onCancel} disabled={busy} aria-busy={busy}>
      {busy ? 'Cancelling…' : 'Cancel job'}
    </button>
  );
}
