import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

// `npm run dev` proxies the API to a bridge on 127.0.0.1:5000 (`make demo`'s default).
const bridge = process.env.BRIDGE_URL || 'http://127.0.0.1:5000';

export default defineConfig({
  plugins: [react()],
  build: { outDir: 'dist', emptyOutDir: true, assetsDir: 'assets' },
  server: {
    proxy: Object.fromEntries(['/workflows', '/jobs', '/media', '/healthz'].map((p) => [p, bridge])),
  },
  test: {
    environment: 'happy-dom',
    include: ['test/**/*.test.{js,jsx}'],
    restoreMocks: true,
  },
});
