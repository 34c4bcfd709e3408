import { defineConfig } from 'vite';

// trellisd embeds dist/ (go:embed in ../dashboard.go): relative asset
// paths, no hashing surprises across rebuilds beyond Vite's own.
export default defineConfig({
  base: './',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    chunkSizeWarningLimit: 1500,
  },
});
