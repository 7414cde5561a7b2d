import { fileURLToPath } from 'node:url'
import vue from '@vitejs/plugin-vue'
import { defineConfig } from 'vitest/config'

// The build lands in the Python package, which serves it (src/wabapool/api/web.py); it is never committed.
const outDir = fileURLToPath(new URL('../src/wabapool/web_dist', import.meta.url))

export default defineConfig({
  plugins: [vue()],
  base: '/',
  build: {
    outDir,
    emptyOutDir: true,
    assetsDir: 'assets',
    target: 'es2022',
    modulePreload: { polyfill: false },
  },
  test: {
    environment: 'jsdom',
    globals: true,
    include: ['src/**/*.spec.ts'],
  },
})
