/** The workflows of `/workflows/list` as a radio group; a new spec file is a new option. */
export function WorkflowSelector({ workflows, value, onChange, disabled = false }) {
  if (!workflows.length) {
    return <p className="muted">No workflows are available.</p>;
  }
  return (
    <fieldset className="workflow-selector" disabled={disabled}>
      <legend>Workflow</legend>
      {workflows.map((workflow) => {
        const id = `workflow-${workflow.id}`;
        return (
          <div className="workflow-option" key={workflow.id}>
            <input
              type="radio"
              id={id}
              name="workflow"
              value={workflow.id}
              checked={value === workflow.id}
              onChange={() => onChange(workflow.id)}
              aria-describedby={`${id}-about`}
            />
            <label htmlFor={id}>
              <span aria-hidden="true" className="workflow-icon">
                {workflow.icon}
              </span>{' '}
              {workflow.name}
            </label>
            <p id={`${id}-about`} className="muted workflow-about">
              {workflow.description}
              {workflow.estimated_duration_seconds
                ? ` About ${Math.round(workflow.estimated_duration_seconds / 60)} min.`
                : ''}
              {workflow.credits_cost ? ` ${workflow.credits_cost} credits.` : ''}
            </p>
          </div>
        );
      })}
    </fieldset>
  );
}
