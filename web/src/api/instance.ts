/** The page's one client, set once at start-up (main.ts) or by a test. */
import type { ApiClient } from './client'

let current: ApiClient | null = null

export function setApiClient(client: ApiClient): void {
  current = client
}

export function apiClient(): ApiClient {
  if (!current) throw new Error('the API client is not set: call setApiClient() first')
  return current
}
