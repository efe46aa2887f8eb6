// Who the page acts for: a Supabase session (supabase-js) when the bridge gives the page
// SUPABASE_URL and SUPABASE_ANON_KEY, or `local-dev` when the bridge runs AUTH_MODE=disabled.
import { useCallback, useEffect, useRef, useState } from 'react';

const loadSupabase = async () => (await import('@supabase/supabase-js')).createClient;

/**
 * `{status, user, notice, getToken, signIn, signOut, onUnauthorized}`; `status` is one of
 * `loading`, `signed_out`, `signed_in`, `local` (no sign-in: the demo) or `unconfigured`.
 */
export function useAuth(config, { createClient = null } = {}) {
  const supabase = Boolean(config.supabase_url && config.supabase_anon_key);
  const initial = supabase ? 'loading' : config.auth_mode === 'disabled' ? 'local' : 'unconfigured';
  const [state, setState] = useState({
    status: initial,
    user: initial === 'local' ? 'local-dev' : null,
    notice: null,
  });
  const client = useRef(null);

  useEffect(() => {
    if (!supabase) return undefined;
    let stopped = false;
    let subscription = null;
    (async () => {
      const make = createClient || (await loadSupabase());
      if (stopped) return;
      client.current = make(config.supabase_url, config.supabase_anon_key);
      const { data } = await client.current.auth.getSession();
      if (stopped) return;
      const show = (session) =>
        setState((old) => ({
          ...old,
          status: session ? 'signed_in' : 'signed_out',
          user: session?.user?.email || session?.user?.id || null,
        }));
      show(data?.session);
      subscription = client.current.auth.onAuthStateChange((_event, session) => show(session)).data
        ?.subscription;
    })();
    return () => {
      stopped = true;
      subscription?.unsubscribe();
    };
  }, [supabase, config.supabase_url, config.supabase_anon_key, createClient]);

  const getToken = useCallback(async () => {
    if (!client.current) return null;
    const { data } = await client.current.auth.getSession(); // refreshes an expiring token
    return data?.session?.access_token || null;
  }, []);

  const signIn = useCallback(async (email, password) => {
    const { error } = await client.current.auth.signInWithPassword({ email, password });
    if (error) throw new Error(error.message);
    setState((old) => ({ ...old, notice: null }));
  }, []);

  const signOut = useCallback(async () => {
    await client.current?.auth.signOut();
  }, []);

  const onUnauthorized = useCallback(async () => {
    if (!client.current) return;
    setState((old) => ({ ...old, notice: 'Your session has ended. Please sign in again.' }));
    await client.current.auth.signOut();
    setState((old) => ({ ...old, status: 'signed_out', user: null }));
  }, []);

  return { ...state, getToken, signIn, signOut, onUnauthorized };
}
