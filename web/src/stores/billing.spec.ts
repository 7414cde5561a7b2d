import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it } from 'vitest'
import { ApiClient } from '../api/client'
import { setApiClient } from '../api/instance'
import { type Route, envelope, fakeFetch, wireEvent, wireInfo, wireUsage } from '../test/fixtures'
import { useBillingStore } from './billing'

function withRoutes(routes: Record<string, Route | ((url: URL) => Route)>) {
  const fake = fakeFetch(routes)
  setApiClient(new ApiClient({ token: () => 'token-1', fetch: fake.fetch }))
  return fake
}

const ok = {
  '/billings/info': { body: wireInfo() },
  '/usage': { body: wireUsage() },
  '/billing_events': { body: { data: [wireEvent(1, 'balance_low')], next_cursor: null } },
}

describe('billing store', () => {
  beforeEach(() => setActivePinia(createPinia()))

  it('starts loading and succeeds when every part loads', async () => {
    withRoutes(ok)
    const store = useBillingStore()
    expect(store.overall).toBe('loading')
    await store.loadAll()
    expect([store.infoState, store.usageState, store.eventsState, store.overall]).toEqual([
      'success',
      'success',
      'success',
      'success',
    ])
    expect(store.timeZone).toBe('Asia/Jakarta')
  })

  it('a partial failure keeps what loaded and marks only the failed part', async () => {
    withRoutes({ ...ok, '/usage': { status: 503, body: envelope('unavailable', 'the database is not reachable') } })
    const store = useBillingStore()
    await store.loadAll()
    expect(store.infoState).toBe('success')
    expect(store.info?.balance.total).toBe(62_331_600)
    expect(store.usageState).toBe('error')
    expect(store.usageError).toBe('the database is not reachable.')
    expect(store.eventsState).toBe('success')
    expect(store.overall).toBe('partial')
  })

  it('without billings/info the chart is partial (no WABA names) and the summary an error', async () => {
    withRoutes({ ...ok, '/billings/info': { status: 500, text: 'oops' } })
    const store = useBillingStore()
    await store.loadAll()
    expect(store.infoState).toBe('error')
    expect(store.infoError).toBe('the server answered 500.')
    expect(store.usageState).toBe('partial')
    expect(store.overall).toBe('partial')
  })

  it('every part failing is an error; a retry of one part recovers it', async () => {
    let up = false
    const down: Route = { status: 503, body: envelope('unavailable', 'down') }
    withRoutes({
      '/billings/info': () => (up ? ok['/billings/info'] : down),
      '/usage': down,
      '/billing_events': down,
    })
    const store = useBillingStore()
    await store.loadAll()
    expect(store.overall).toBe('error')
    up = true
    await store.loadInfo()
    expect(store.infoState).toBe('success')
    expect(store.overall).toBe('partial')
  })

  it('a stale balance is partial', async () => {
    withRoutes({ ...ok, '/billings/info': { body: wireInfo({ stale: true }) } })
    const store = useBillingStore()
    await store.loadAll()
    expect(store.infoState).toBe('partial')
  })

  it('a company the API does not know is empty, not an error', async () => {
    withRoutes({ ...ok, '/billings/info': { status: 404, body: envelope('unknown_company', 'unknown company') } })
    const store = useBillingStore()
    await store.loadAll()
    expect(store.infoState).toBe('empty')
  })

  it('no spend and no events are empty states', async () => {
    withRoutes({
      ...ok,
      '/usage': { body: { currency: 'IDR', days: [{ date: '2026-12-01', amount: 0, messages: 0, by_waba: [] }] } },
      '/billing_events': { body: { data: [], next_cursor: null } },
    })
    const store = useBillingStore()
    await store.loadAll()
    expect(store.usageState).toBe('empty')
    expect(store.eventsState).toBe('empty')
  })

  it('the next page of events failing leaves the first page: partial', async () => {
    withRoutes({
      ...ok,
      '/billing_events': (url) =>
        url.searchParams.get('cursor')
          ? { status: 500, body: envelope('internal', 'boom') }
          : { body: { data: [wireEvent(2, 'balance_low')], next_cursor: 'c1' } },
    })
    const store = useBillingStore()
    await store.loadAll()
    await store.loadMoreEvents()
    expect(store.events).toHaveLength(1)
    expect(store.eventsState).toBe('partial')
    expect(store.eventsMoreError).toBe('boom.')
  })
})
