import { mount } from '@vue/test-utils'
import { describe, expect, it } from 'vitest'
import LowBalanceBanner from './LowBalanceBanner.vue'

const base = { thresholdPercent: '40.00', postpaidUsed: 1_100_000, postpaidLimit: 100_000_000, currency: 'IDR' }

function name(wrapper: ReturnType<typeof mount>): string {
  const id = wrapper.get('.banner').attributes('aria-labelledby')
  return wrapper.get(`#${id}`).text().replace(/\u00a0/g, ' ')
}

describe('LowBalanceBanner', () => {
  it('low: a status named by its message, which says "low" and the funds left', () => {
    const wrapper = mount(LowBalanceBanner, { props: { ...base, variant: 'low', percentLeft: 25 } })
    expect(wrapper.get('.banner').attributes('role')).toBe('status')
    expect(name(wrapper)).toBe("Your shared balance is running low (25% of this cycle's funds left).")
  })

  it('low without the base: falls back to the threshold', () => {
    const wrapper = mount(LowBalanceBanner, { props: { ...base, variant: 'low' } })
    expect(name(wrapper)).toContain('at or below 40%')
  })

  it('below zero: an alert with the postpaid credit used', () => {
    const wrapper = mount(LowBalanceBanner, { props: { ...base, variant: 'below_zero' } })
    expect(wrapper.get('.banner').attributes('role')).toBe('alert')
    expect(name(wrapper)).toBe(
      'Your balance is below zero: messages are being charged to your postpaid credit (Rp 11.000 of Rp 1.000.000).',
    )
  })

  it('Top up emits top-up without a host link, and is that link when given', async () => {
    const wrapper = mount(LowBalanceBanner, { props: { ...base, variant: 'low' } })
    await wrapper.get('button.button-primary').trigger('click')
    expect(wrapper.emitted('top-up')).toHaveLength(1)
    const linked = mount(LowBalanceBanner, { props: { ...base, variant: 'low', topUpHref: '/billing/top-up' } })
    expect(linked.get('a').attributes('href')).toBe('/billing/top-up')
    expect(linked.get('a').text()).toBe('Top up')
  })

  it('the close button is named and emits dismiss', async () => {
    const wrapper = mount(LowBalanceBanner, { props: { ...base, variant: 'below_zero' } })
    const close = wrapper.get('button[aria-label]')
    expect(close.attributes('aria-label')).toContain('Dismiss')
    await close.trigger('click')
    expect(wrapper.emitted('dismiss')).toHaveLength(1)
  })
})
