/**
 * The per-step choices the API accepts: a model from the step's `supported_models` and a
 * prompt (prefilled with the workflow's default). `value` is `{models, prompts}` as sent.
 */
export function StepOptions({ workflow, value, onChange, disabled = false, error = null }) {
  if (!workflow) return null;
  const models = workflow.supported_models || {};
  const prompts = workflow.default_prompts || {};
  const steps = (workflow.steps || []).filter((s) => models[s.name]?.length || s.name in prompts);
  if (!steps.length) return null;

  const setModel = (step, model) => {
    const next = { ...value.models };
    if (model) next[step] = model;
    else delete next[step];
    onChange({ ...value, models: next });
  };
  const setPrompt = (step, text) => {
    const next = { ...value.prompts };
    // Only a changed prompt is sent; the default is the workflow's own.
    if (text !== prompts[step]) next[step] = text;
    else delete next[step];
    onChange({ ...value, prompts: next });
  };

  return (
    <div className="step-options">
      {steps.map((step) => {
        const base = `option-${workflow.id}-${step.name}`;
        return (
          <fieldset key={step.name} disabled={disabled}>
            <legend>Step: {step.name.replaceAll('_', ' ')}</legend>
            {step.description && <p className="muted">{step.description}</p>}
            {models[step.name]?.length > 0 && (
              <div className="field">
                <label htmlFor={`${base}-model`}>Model for {step.name}</label>
                <select
                  id={`${base}-model`}
                  value={value.models[step.name] || ''}
                  onChange={(event) => setModel(step.name, event.target.value)}
                >
                  <option value="">Workflow default</option>
                  {models[step.name].map((model) => (
                    <option key={model} value={model}>
                      {model}
                    </option>
                  ))}
                </select>
              </div>
            )}
            {step.name in prompts && (
              <div className="field">
                <label htmlFor={`${base}-prompt`}>Prompt for {step.name}</label>
                <textarea
                  id={`${base}-prompt`}
                  rows={3}
                  value={value.prompts[step.name] ?? prompts[step.name]}
                  onChange={(event) => setPrompt(step.name, event.target.value)}
                />
              </div>
            )}
          </fieldset>
        );
      })}
      {error && (
        <p className="field-error" role="alert">
          {error}
        </p>
      )}
    </div>
  );
}
