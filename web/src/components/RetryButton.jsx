/** Resumes a job from its first step without a checkpoint; shown only when `canRetry`. */
export function RetryButton({ canRetry, onRetry, busy = false }) {
  if (!canRetry) return null;
  return (
    <button type="button" onClick={onRetry} disabled={busy} aria-busy={busy}>
      {busy ? 'Retrying…' : 'Retry'}
    </button>
  );
}
