import { videoOf } from '../jobState.js';

/** The finished job's video, playing in the page, with a download link. */
export function ResultDisplay({ result, mediaUrl = (url) => url, title = 'Result' }) {
  const video = videoOf(result);
  if (!video) return null;
  const src = mediaUrl(video);
  const name = video.split('/').pop().split('?')[0] || 'result.mp4';
  return (
    <section className="result" aria-labelledby="result-heading">
      <h2 id="result-heading">{title}</h2>
      <video src={src} controls playsInline preload="auto" aria-label="Result video" />
      <p>
        <a href={src} download={name}>
          Download video
        </a>
      </p>
    </section>
  );
}
