import { useEffect, useState } from 'react';

/** The current time in ms, updated every `intervalMs` while `enabled` (for countdowns). */
export function useNow(intervalMs = 1000, enabled = true, clock = Date.now) {
  const [now, setNow] = useState(clock);
  useEffect(() => {
    if (!enabled) return undefined;
    setNow(clock());
    const timer = setInterval(() => setNow(clock()), intervalMs);
    return () => clearInterval(timer);
  }, [intervalMs, enabled, clock]);
  return now;
}
