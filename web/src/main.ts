/**
 * Start-up: the bearer token comes from the host application (`window.wabapoolToken`) or, for `serve --demo`
 * and links, from the URL fragment `#token=…` (kept for the tab in sessionStorage, then removed from the address).
 */
import { createPinia } from 'pinia'
import { createApp } from 'vue'
import App from './App.vue'
import { ApiClient } from './api/client'
import { setApiClient } from './api/instance'
import { ANALYTICS, type AnalyticsSink, apiSink } from './lib/analytics'
import { roleOf } from './lib/token'
import './styles.css'

const TOKEN_KEY = 'wabapool.token'

declare global {
  interface Window {
    wabapoolToken?: string
    /** Where the banner's "Top up" goes in the host application. */
    wabapoolTopUpUrl?: string
    /** A host's own analytics sink (otherwise events are posted to the API). */
    wabapoolAnalytics?: AnalyticsSink
  }
}

function tokenFromFragment(): string | null {
  const params = new URLSearchParams(window.location.hash.slice(1))
  const token = params.get('token')
  if (!token) return null
  try {
    sessionStorage.setItem(TOKEN_KEY, token)
  } catch {
    // no storage: the token lives for this load only
  }
  params.delete('token')
  const rest = params.toString()
  history.replaceState(null, '', `${window.location.pathname}${window.location.search}${rest ? `#${rest}` : ''}`)
  return token
}

function storedToken(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_KEY)
  } catch {
    return null
  }
}

const fragmentToken = tokenFromFragment()
const token = (): string | null => window.wabapoolToken ?? fragmentToken ?? storedToken()
const client = new ApiClient({ token })
setApiClient(client)

const app = createApp(App, {
  signedIn: token() !== null,
  topUpHref: window.wabapoolTopUpUrl ?? null,
  role: roleOf(token()),
})
app.use(createPinia())
app.provide(ANALYTICS, window.wabapoolAnalytics ?? apiSink(client))
app.mount('#app')
