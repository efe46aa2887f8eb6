/** A wait for a person: "45 s" under a minute and a half, else whole minutes ("12 min"). */
export function formatWait(seconds) {
  return seconds < 90 ? `${seconds} s` : `${Math.ceil(seconds / 60)} min`;
}
