import { useMemo } from 'react';
import { createApiClient } from './api/client.js';
import { useAuth } from './auth/useAuth.js';
import { SignIn } from './components/SignIn.jsx';
import { readPageConfig } from './config.js';
import { WorkflowsPage } from './pages/Workflows.jsx';

/** The whole page: sign-in (Supabase) or the demo's local-dev, then the Workflows page. */
export function App({ config = readPageConfig(), createSupabaseClient = null }) {
  const auth = useAuth(config, { createClient: createSupabaseClient });
  const api = useMemo(
    () => createApiClient({ baseUrl: config.api_base, getToken: auth.getToken }),
    [config.api_base, auth.getToken],
  );
  let body;
  if (auth.status === 'loading') body = <p role="status">Loading…</p>;
  else if (auth.status === 'signed_out') body = <SignIn onSignIn={auth.signIn} notice={auth.notice} />;
  else if (auth.status === 'unconfigured')
    body = (
      <p role="alert">
        This server needs a sign-in, but the page has no Supabase settings. Set SUPABASE_URL and
        SUPABASE_ANON_KEY for the bridge.
      </p>
    );
  else body = <WorkflowsPage api={api} onUnauthorized={auth.onUnauthorized} />;
  return (
    <>
      <header className="app-header">
        <h1>Workflows</h1>
        {auth.user && (
          <div className="who">
            <span>
              Signed in as <strong>{auth.user}</strong>
            </span>
            {auth.status === 'signed_in' && (
              <button type="button" className="secondary" onClick={auth.signOut}>
                Sign out
              </button>
            )}
          </div>
        )}
      </header>
      <main id="main">{body}</main>
    </>
  );
}
