import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it } from 'vitest'
import { ApiClient } from '../api/client'
import { setApiClient } from '../api/instance'
import { type Route, envelope, fakeFetch, wireLogRow } from '../test/fixtures'
import { noFilters, useLogsStore } from './logs'

function withRoutes(routes: Record<string, Route | ((url: URL) => Route)>) {
  const fake = fakeFetch(routes)
  setApiClient(new ApiClient({ token: () => 'token-1', fetch: fake.fetch }))
  return fake
}

describe('logs store', () => {
  beforeEach(() => setActivePinia(createPinia()))

  it('loads the first page and knows whether the API sent the WABA columns', async () => {
    withRoutes({ '/mcc_logs': { body: { data: [wireLogRow(2, { waba_id: '111', waba_name: 'Sales' })], next_cursor: 'c1' } } })
    const store = useLogsStore()
    await store.load()
    expect(store.state).toBe('success')
    expect(store.showWabaId).toBe(true)
    expect(store.rows[0]?.wabaId).toBe('111')
    expect(store.nextCursor).toBe('c1')
  })

  it('rows without waba_id mean the preference is off', async () => {
    withRoutes({ '/mcc_logs': { body: { data: [wireLogRow(2)], next_cursor: null } } })
    const store = useLogsStore()
    await store.load()
    expect(store.showWabaId).toBe(false)
    expect('wabaId' in store.rows[0]!).toBe(false)
  })

  it('sends the filters: WABA, category, and dates as instants of the company day', async () => {
    const fake = withRoutes({ '/mcc_logs': { body: { data: [], next_cursor: null } } })
    const store = useLogsStore()
    await store.setFilters({ wabaId: '111', category: 'utility', from: '2026-11-20', to: '2026-11-25' })
    const query = fake.calls.at(-1)!.url.searchParams
    expect(query.get('waba_id')).toBe('111')
    expect(query.get('category')).toBe('utility')
    expect(query.get('from')).toBe('2026-11-19T17:00:00.000Z')
    expect(query.get('to')).toBe('2026-11-25T17:00:00.000Z')
    expect(store.state).toBe('empty')
    expect(store.filtersActive).toBe(true)
  })

  it('a slow answer to an older filter never replaces the newer one', async () => {
    withRoutes({
      '/mcc_logs': (url) =>
        url.searchParams.get('waba_id') === 'slow'
          ? { delayMs: 30, body: { data: [wireLogRow(1)], next_cursor: null } }
          : { body: { data: [wireLogRow(2), wireLogRow(3)], next_cursor: null } },
    })
    const store = useLogsStore()
    const first = store.setFilters({ ...noFilters(), wabaId: 'slow' })
    const second = store.setFilters({ ...noFilters(), wabaId: 'fast' })
    await Promise.all([first, second])
    expect(store.rows.map((row) => row.deductionId)).toEqual([2, 3])
    expect(store.filters.wabaId).toBe('fast')
  })

  it('a failed next page keeps the rows already shown: partial, and a retry continues', async () => {
    let fail = true
    withRoutes({
      '/mcc_logs': (url) => {
        if (!url.searchParams.get('cursor')) return { body: { data: [wireLogRow(3), wireLogRow(2)], next_cursor: 'c1' } }
        return fail
          ? { status: 503, body: envelope('unavailable', 'try later') }
          : { body: { data: [wireLogRow(1)], next_cursor: null } }
      },
    })
    const store = useLogsStore()
    await store.load()
    await store.loadMore()
    expect(store.state).toBe('partial')
    expect(store.rows).toHaveLength(2)
    expect(store.moreError).toBe('try later.')
    fail = false
    await store.loadMore()
    expect(store.state).toBe('success')
    expect(store.rows.map((row) => row.deductionId)).toEqual([3, 2, 1])
    expect(store.nextCursor).toBeNull()
  })

  it('a failed first page is an error with no rows', async () => {
    withRoutes({ '/mcc_logs': { status: 403, body: envelope('forbidden', 'role agent may not do this') } })
    const store = useLogsStore()
    await store.load()
    expect(store.state).toBe('error')
    expect(store.error).toBe('your role may not see this.')
  })
})
