/**
 * The page's settings, written by the bridge into index.html as a JSON data block:
 * `{"auth_mode": "supabase|disabled", "supabase_url": ..., "supabase_anon_key": ..., "api_base": ""}`.
 * Missing (e.g. the Vite dev server): the local demo's settings.
 */
export function readPageConfig(doc = globalThis.document) {
  const block = doc?.getElementById('workflows-config');
  let config = {};
  try {
    config = JSON.parse(block?.textContent || '{}') || {};
  } catch {
    config = {};
  }
  return {
    auth_mode: config.auth_mode || 'disabled',
    supabase_url: config.supabase_url || null,
    supabase_anon_key: config.supabase_anon_key || null,
    api_base: config.api_base || '',
  };
}
