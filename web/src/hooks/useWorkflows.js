import { useCallback, useEffect, useState } from 'react';

/** The workflows of `/workflows/list`: `{workflows, loading, error, reload}`. */
export function useWorkflows(api) {
  const [state, setState] = useState({ workflows: [], loading: true, error: null });
  const reload = useCallback(async () => {
    setState((old) => ({ ...old, loading: true }));
    try {
      const workflows = await api.listWorkflows();
      setState({ workflows, loading: false, error: null });
    } catch (error) {
      setState((old) => ({ ...old, loading: false, error }));
    }
  }, [api]);
  useEffect(() => {
    reload();
  }, [reload]);
  return { ...state, reload };
}
