import { useEffect, useState } from 'react';

/** The input file with a preview; `error` (the API's refusal) shows next to the field. */
export function FileUploader({
  file,
  onChange,
  error = null,
  disabled = false,
  accept = 'image/*',
  id = 'input-file',
  label = 'Input image',
}) {
  const [preview, setPreview] = useState(null);
  useEffect(() => {
    if (!file || !file.type?.startsWith('image/') || !globalThis.URL?.createObjectURL) {
      setPreview(null);
      return undefined;
    }
    const url = URL.createObjectURL(file);
    setPreview(url);
    return () => URL.revokeObjectURL(url);
  }, [file]);
  const errorId = `${id}-error`;
  return (
    <div className="field file-uploader">
      <label htmlFor={id}>{label}</label>
      <input
        id={id}
        type="file"
        accept={accept}
        disabled={disabled}
        aria-invalid={error ? 'true' : undefined}
        aria-describedby={error ? errorId : undefined}
        onChange={(event) => onChange(event.target.files?.[0] ?? null)}
      />
      {preview && (
        <img
          className="file-preview"
          src={preview}
          alt={`Preview of ${file.name}`}
          onError={() => setPreview(null)} // not a picture the browser can show
        />
      )}
      {error && (
        <p id={errorId} className="field-error" role="alert">
          {error}
        </p>
      )}
    </div>
  );
}
