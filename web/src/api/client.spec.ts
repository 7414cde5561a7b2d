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
    expect(info.wabas[0]).toEqual({
      wabaId: '102290129340398',
      name: 'Sales',
      spentThisCycle: 101_995_600,
      dailySpend: 0,
      balance: null,
    })
    expect(info.billingVersion).toBe('v3')
    expect(info.fundedThisCycle).toBe(250_000_000)
  })

  it('maps the forecast, the open top-up request and a v2 WABA\'s own balance', async () => {
    const own = { ...(wireInfo().balance as object), total: 5_000 }
    const body = wireInfo({
      forecast: { runs_out_at: '2026-12-14T03:00:00+00:00', daily_spend: 4_200_000, basis_days: 7 },
      top_up_request: {
        payment_reference: 'auto-recharge:1:2026-11-19:1',
        amount: 50_000_000,
        requested_at: '2026-12-01T03:02:00+00:00',
        expires_at: '2026-12-02T03:02:00+00:00',
        waba_id: null,
      },
      wabas: [{ waba_id: '1', name: 'Own', spent_this_cycle: 10, daily_spend: 3, balance: own }],
    })
    const { api } = client({ '/billings/info': { body } })
    const info = await api.billingInfo()
    expect(info.forecast).toEqual({ runsOutAt: '2026-12-14T03:00:00+00:00', dailySpend: 4_200_000, basisDays: 7 })
    expect(info.topUpRequest?.amount).toBe(50_000_000)
    expect(info.wabas[0]?.dailySpend).toBe(3)
    expect(info.wabas[0]?.balance?.total).toBe(5_000)
  })

  it('reads and saves the balance alerts in the wire shape', async () => {
    const wire = {
      alerts: [{ kind: 'percent', value: 20 }],
      auto_recharge: { below: 10_000_000, amount: 50_000_000, max_per_cycle: 3 },
      forecast_warning_days: 3,
      editable: true,
    }
    const { api, calls } = client({ '/balance_alerts': { body: wire } })
    const settings = await api.balanceAlerts()
    expect(settings).toEqual({
      alerts: [{ kind: 'percent', value: 20 }],
      autoRecharge: { below: 10_000_000, amount: 50_000_000, maxPerCycle: 3 },
      forecastWarningDays: 3,
      editable: true,
    })
    await api.saveBalanceAlerts({ alerts: [{ kind: 'amount', value: 500 }], autoRecharge: null })
    expect(calls[1]!.init?.method).toBe('PUT')
    expect(JSON.parse(String(calls[1]!.init?.body))).toEqual({
      alerts: [{ kind: 'amount', value: 500 }],
      auto_recharge: null,
    })
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
