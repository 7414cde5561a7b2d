import { flushPromises, mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import App from './App.vue'
import { ApiClient } from './api/client'
import { setApiClient } from './api/instance'
import { ANALYTICS, memorySink } from './lib/analytics'
import { type Route, fakeFetch, wireEvent, wireInfo, wireLogRow, wireUsage } from './test/fixtures'

function routes(info: Record<string, unknown>): Record<string, Route> {
  return {
    '/billings/info': { body: info },
    '/usage': { body: wireUsage() },
    '/mcc_logs': { body: { data: [wireLogRow(1)], next_cursor: null } },
    '/billing_events': { body: { data: [wireEvent(1, 'balance_low')], next_cursor: null } },
  }
}

async function mountApp(info: Record<string, unknown>) {
  const fake = fakeFetch(routes(info))
  setApiClient(new ApiClient({ token: () => 'tok', fetch: fake.fetch }))
  const sink = memorySink()
  const pinia = createPinia()
  setActivePinia(pinia)
  const wrapper = mount(App, {
    props: { signedIn: true },
    global: { plugins: [pinia], provide: { [ANALYTICS as symbol]: sink } },
    attachTo: document.body,
  })
  await flushPromises()
  return { wrapper, sink }
}

describe('App', () => {
  beforeEach(() => sessionStorage.clear())
  afterEach(() => {
    document.body.innerHTML = ''
  })

  it('sends one analytics event per tooltip opening, with the billing version and the trigger', async () => {
    const { wrapper, sink } = await mountApp(wireInfo())
    const trigger = wrapper.get('button[aria-describedby]')
    await trigger.trigger('focus')
    await trigger.trigger('keydown', { key: 'Escape' })
    await trigger.trigger('pointerdown')
    await trigger.trigger('click')
    await trigger.trigger('click')
    expect(sink.events).toEqual([
      { name: 'billing_shared_balance_tooltip_opened', properties: { billing_version: 'v3', trigger: 'focus' } },
      { name: 'billing_shared_balance_tooltip_opened', properties: { billing_version: 'v3', trigger: 'click' } },
    ])
  })

  it('below zero takes precedence over low: one alert banner, no status', async () => {
    const { wrapper } = await mountApp(wireInfo({ low_balance: true, below_zero: true }))
    expect(wrapper.findAll('[role="alert"]')).toHaveLength(1)
    expect(wrapper.find('.banner[role="status"]').exists()).toBe(false)
  })

  it('a dismissed banner stays hidden for the session, per variant', async () => {
    const first = await mountApp(wireInfo())
    await first.wrapper.get('.banner button[aria-label]').trigger('click')
    expect(first.wrapper.find('.banner').exists()).toBe(false)
    first.wrapper.unmount()
    const again = await mountApp(wireInfo())
    expect(again.wrapper.find('.banner').exists()).toBe(false)
    again.wrapper.unmount()
    const worse = await mountApp(wireInfo({ below_zero: true }))
    expect(worse.wrapper.find('.banner[role="alert"]').exists()).toBe(true)
  })

  it('a healthy pool shows no banner but a quiet line', async () => {
    const { wrapper } = await mountApp(wireInfo({ low_balance: false }))
    expect(wrapper.find('.banner').exists()).toBe(false)
    expect(wrapper.get('.healthy').text()).toContain('above the 40% low-balance mark')
  })

  it('without a token the page says how to sign in and calls nothing', async () => {
    const fake = fakeFetch({})
    setApiClient(new ApiClient({ token: () => null, fetch: fake.fetch }))
    const pinia = createPinia()
    const wrapper = mount(App, { props: { signedIn: false }, global: { plugins: [pinia] } })
    await flushPromises()
    expect(wrapper.text()).toContain('You are not signed in')
    expect(fake.calls).toHaveLength(0)
  })
})
