import { mount } from '@vue/test-utils'
import { describe, expect, it } from 'vitest'
import { info } from '../test/fixtures'
import BalanceSummary from './BalanceSummary.vue'

const plain = (text: string) => text.replace(/\u00a0/g, ' ')

describe('BalanceSummary', () => {
  it('loading: skeleton blocks and no figures', () => {
    const wrapper = mount(BalanceSummary, { props: { state: 'loading', info: null } })
    expect(wrapper.find('[data-state="loading"]').exists()).toBe(true)
    expect(wrapper.findAll('.skeleton').length).toBeGreaterThan(2)
    expect(wrapper.find('[data-testid="balance-total"]').exists()).toBe(false)
    expect(wrapper.get('section').attributes('aria-busy')).toBe('true')
  })

  it('error: says what failed and retries', async () => {
    const wrapper = mount(BalanceSummary, { props: { state: 'error', info: null, errorMessage: 'the server answered 500.' } })
    expect(wrapper.text()).toContain("We couldn't load your balance. the server answered 500.")
    await wrapper.get('button').trigger('click')
    expect(wrapper.emitted('retry')).toHaveLength(1)
  })

  it('empty: a company without a package', () => {
    const wrapper = mount(BalanceSummary, { props: { state: 'empty', info: null } })
    expect(wrapper.text()).toContain('No package is set up')
  })

  it('success: total and available in rupiah, allowance used with its percentage and reset time', () => {
    const wrapper = mount(BalanceSummary, { props: { state: 'success', info: info() } })
    expect(plain(wrapper.get('[data-testid="balance-total"]').text())).toBe('Rp 623.316')
    expect(plain(wrapper.get('[data-testid="balance-available"]').text())).toBe('available Rp 1.623.316')
    expect(wrapper.text()).toContain('93% of allowance used')
    expect(wrapper.text()).toContain('resets 19 Dec, 00:00')
    expect(wrapper.text()).toContain('3 WABAs share this balance')
    expect(wrapper.get('progress').attributes('value')).toBe('187668400')
  })

  it('a v3 company gets the shared-pool tooltip and its opened event is passed on', async () => {
    const wrapper = mount(BalanceSummary, { props: { state: 'success', info: info() } })
    await wrapper.get('button[aria-describedby]').trigger('focus')
    expect(wrapper.emitted('tooltip-opened')).toEqual([['focus']])
  })

  it.each(['v2', undefined, 'v9'])('billing_version %s shows no shared-pool tooltip', (version) => {
    const wrapper = mount(BalanceSummary, { props: { state: 'success', info: info({ billing_version: version }) } })
    expect(wrapper.find('[role="tooltip"]').exists()).toBe(false)
    expect(wrapper.text()).not.toContain('share this balance')
  })

  it('a negative total is in the danger style with a real minus sign', () => {
    const negative = info()
    negative.balance.total = -1_100_000
    const wrapper = mount(BalanceSummary, { props: { state: 'success', info: negative } })
    const total = wrapper.get('[data-testid="balance-total"]')
    expect(total.classes()).toContain('negative')
    expect(plain(total.text())).toBe('\u2212Rp 11.000')
  })

  it('partial: stale figures are shown with a note and a retry', async () => {
    const wrapper = mount(BalanceSummary, { props: { state: 'partial', info: info({ stale: true }) } })
    expect(wrapper.find('[data-testid="balance-total"]').exists()).toBe(true)
    expect(wrapper.get('[data-testid="summary-partial"]').text()).toContain('these figures are from 2 Dec, 02:40')
    await wrapper.get('[data-testid="summary-partial"] button').trigger('click')
    expect(wrapper.emitted('retry')).toHaveLength(1)
  })
})
