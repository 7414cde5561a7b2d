import { describe, expect, it } from 'vitest'
import { type Route, envelope, fakeFetch, wireEvent, wireInfo } from '../test/fixtures'
import { ApiClient, ApiError, toBillingEvent } from './client'

function client(routes: Record<string, Route | ((url: URL) => Route)>, token: string | null = 'tok') {
  const fake = fakeFetch(routes)
  return { api: new ApiClient({ token: () => token, fetch: fake.fetch }), calls: fake.calls }
}

function streamOf(chunks: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder()
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(encoder.encode(chunk))
      controller.close()
    },
  })
}

describe('ApiClient', () => {
  it('sends the bearer token and maps snake_case to camelCase', async () => {
    const { api, calls } = client({ '/billings/info': { body: wireInfo() } })
    const info = await api.billingInfo()
    expect(new Headers(calls[0]!.init?.headers).get('Authorization')).toBe('Bearer tok')
    expect(info.balance.wabi.resetsAt).toBe('2026-12-18T17:00:00+00:00')
    expect(info.wabas[0]).toEqual({ wabaId: '102290129340398', name: 'Sales', spentThisCycle: 101_995_600 })
    expect(info.billingVersion).toBe('v3')
    expect(info.fundedThisCycle).toBe(250_000_000)
  })

  it('an unknown billing_version is "unknown"; a missing timezone is derived from the cycle start', async () => {
    const { api } = client({ '/billings/info': { body: wireInfo({ billing_version: undefined, timezone: undefined }) } })
    const info = await api.billingInfo()
    expect(info.billingVersion).toBe('unknown')
    expect(info.timezone).toBe('Etc/GMT-7')
  })

  it('turns the error envelope into an ApiError with its code and status', async () => {
    const { api } = client({ '/billings/info': { status: 503, body: envelope('unavailable', 'later') } })
    await expect(api.billingInfo()).rejects.toMatchObject({ status: 503, code: 'unavailable', message: 'later' })
  })

  it('a network failure is an ApiError with status 0', async () => {
    const api = new ApiClient({ token: () => null, fetch: () => Promise.reject(new TypeError('Failed to fetch')) })
    const error = await api.billingInfo().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ApiError)
    expect(error).toMatchObject({ status: 0, code: 'network' })
  })

  it('refuses a body whose amounts are not exact integers', async () => {
    const body = wireInfo()
    ;(body.balance as { total: number }).total = 1.5
    const { api } = client({ '/billings/info': { body } })
    await expect(api.billingInfo()).rejects.toMatchObject({ code: 'bad_response' })
  })

  it('streams the CSV, reporting bytes, with the filename from Content-Disposition', async () => {
    const progress: number[] = []
    const api = new ApiClient({
      token: () => 'tok',
      fetch: async () =>
        new Response(streamOf(['Date,WABA ID\n', '2026-12-01,111\n']), {
          headers: { 'Content-Disposition': 'attachment; filename="deductions-all.csv"' },
        }),
    })
    const file = await api.downloadCsv(
      { wabaId: '111', category: null, from: null, to: null },
      { onProgress: (bytes) => progress.push(bytes) },
    )
    expect(file.filename).toBe('deductions-all.csv')
    expect(file.bytes).toBe(28)
    expect(progress).toEqual([13, 28])
    expect(await file.blob.text()).toBe('Date,WABA ID\n2026-12-01,111\n')
  })

  it('posts an analytics event as {name, properties}', async () => {
    const { api, calls } = client({ '/analytics/events': { status: 202, body: { accepted: true } } })
    await api.sendAnalytics('billing_shared_balance_tooltip_opened', { billing_version: 'v3', trigger: 'hover' })
    expect(calls[0]!.init?.method).toBe('POST')
    expect(JSON.parse(String(calls[0]!.init?.body))).toEqual({
      name: 'billing_shared_balance_tooltip_opened',
      properties: { billing_version: 'v3', trigger: 'hover' },
    })
  })

  it('maps billing events and their delivery state', () => {
    expect(toBillingEvent(wireEvent(1, 'balance_low'))).toMatchObject({ id: 'evt-1', delivery: 'delivered', attempts: 1 })
    expect(toBillingEvent(wireEvent(2, 'balance_low', { delivery: { state: 'weird' } })).delivery).toBe('unknown')
  })
})
