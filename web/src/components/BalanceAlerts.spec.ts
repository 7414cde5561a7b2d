import { mount } from '@vue/test-utils'
import { describe, expect, it } from 'vitest'
import type { AlertSettings } from '../api/types'
import BalanceAlerts from './BalanceAlerts.vue'

const plain = (text: string) => text.replace(/\u00a0/g, ' ')
const settings = (overrides: Partial<AlertSettings> = {}): AlertSettings => ({
  alerts: [
    { kind: 'percent', value: 20 },
    { kind: 'amount', value: 50_000_000 },
  ],
  autoRecharge: { below: 10_000_000, amount: 50_000_000, maxPerCycle: 3 },
  forecastWarningDays: 3,
  editable: true,
  ...overrides,
})
const base = { currency: 'IDR', timeZone: 'Asia/Jakarta', topUpRequest: null }

describe('BalanceAlerts', () => {
  it('loading: skeleton rows', () => {
    const wrapper = mount(BalanceAlerts, { props: { ...base, state: 'loading', settings: null } })
    expect(wrapper.find('[data-state="loading"] .skeleton').exists()).toBe(true)
  })

  it('error: says what failed and retries', async () => {
    const wrapper = mount(BalanceAlerts, { props: { ...base, state: 'error', settings: null, errorMessage: 'boom.' } })
    expect(wrapper.text()).toContain("We couldn't load balance alerts. boom.")
    await wrapper.get('button').trigger('click')
    expect(wrapper.emitted('retry')).toHaveLength(1)
  })

  it('read-only for a supervisor: the alerts and the auto-recharge in words, no form', () => {
    const wrapper = mount(BalanceAlerts, {
      props: { ...base, state: 'success', settings: settings({ editable: false }) },
    })
    expect(wrapper.find('form').exists()).toBe(false)
    const text = plain(wrapper.text())
    expect(text).toContain("When 20% of this cycle's funds are left")
    expect(text).toContain('When Rp 500.000 is left')
    expect(text).toContain('Request a top-up of Rp 500.000 when available falls below Rp 100.000 (at most 3 a cycle).')
    expect(text).toContain('Only owners and admins can change these settings.')
  })

  it('shows the open top-up request with its time in the company timezone', () => {
    const topUpRequest = {
      paymentReference: 'auto-recharge:1:2026-11-19:1',
      amount: 50_000_000,
      requestedAt: '2026-12-01T03:02:00+00:00',
      expiresAt: '2026-12-02T03:02:00+00:00',
      wabaId: null,
    }
    const wrapper = mount(BalanceAlerts, { props: { ...base, topUpRequest, state: 'success', settings: settings() } })
    expect(plain(wrapper.get('[data-testid="open-request"]').text())).toContain('Top-up of Rp 500.000 requested at 10:02')
  })

  it('an owner edits: adds an alert, changes the auto-recharge, and saves exact minor units', async () => {
    const wrapper = mount(BalanceAlerts, { props: { ...base, state: 'success', settings: settings() } })
    expect((wrapper.get('input[aria-label="Alert 2 value"]').element as HTMLInputElement).value).toBe('500000')
    await wrapper.get('button.button:not(.button-primary)').trigger('click') // Add alert
    await wrapper.get('select[aria-label="Alert 3 type"]').setValue('amount')
    await wrapper.get('input[aria-label="Alert 3 value"]').setValue('1234.56')
    await wrapper.get('form').trigger('submit')
    expect(wrapper.emitted('save')).toEqual([
      [
        {
          alerts: [
            { kind: 'percent', value: 20 },
            { kind: 'amount', value: 50_000_000 },
            { kind: 'amount', value: 123_456 },
          ],
          autoRecharge: { below: 10_000_000, amount: 50_000_000, maxPerCycle: 3 },
        },
      ],
    ])
  })

  it('turning auto-recharge off and removing an alert saves just that', async () => {
    const wrapper = mount(BalanceAlerts, { props: { ...base, state: 'success', settings: settings() } })
    await wrapper.get('input[type="checkbox"]').setValue(false)
    await wrapper.findAll('button.link-button')[0]!.trigger('click') // Remove alert 1
    await wrapper.get('form').trigger('submit')
    expect(wrapper.emitted('save')).toEqual([[{ alerts: [{ kind: 'amount', value: 50_000_000 }], autoRecharge: null }]])
  })

  it('a value that is not a whole amount is refused before anything is sent', async () => {
    const wrapper = mount(BalanceAlerts, { props: { ...base, state: 'success', settings: settings() } })
    await wrapper.get('input[aria-label="Alert 2 value"]').setValue('1.000.000')
    await wrapper.get('form').trigger('submit')
    expect(wrapper.emitted('save')).toBeUndefined()
    expect(wrapper.text()).toContain('Enter a whole number.')
  })

  it('at most five alerts: the add button goes away', () => {
    const five = Array.from({ length: 5 }, (_, index) => ({ kind: 'percent' as const, value: index + 1 }))
    const wrapper = mount(BalanceAlerts, { props: { ...base, state: 'success', settings: settings({ alerts: five }) } })
    expect(wrapper.findAll('button').some((button) => button.text() === 'Add alert')).toBe(false)
  })

  it('a failed save says why', () => {
    const wrapper = mount(BalanceAlerts, {
      props: { ...base, state: 'success', settings: settings(), saveState: 'error', saveError: 'your role may not see this.' },
    })
    expect(wrapper.text()).toContain("We couldn't save: your role may not see this.")
  })
})
