import { mount } from '@vue/test-utils'
import { describe, expect, it } from 'vitest'
import { event } from '../test/fixtures'
import AlertHistory from './AlertHistory.vue'

const base = { timeZone: 'Asia/Jakarta', currency: 'IDR', hasMore: false, moreState: 'idle' as const }

describe('AlertHistory', () => {
  it('loading: skeleton rows', () => {
    const wrapper = mount(AlertHistory, { props: { ...base, state: 'loading', events: [] } })
    expect(wrapper.findAll('.skeleton')).toHaveLength(3)
  })

  it('error: message and retry', async () => {
    const wrapper = mount(AlertHistory, { props: { ...base, state: 'error', events: [], errorMessage: 'x.' } })
    expect(wrapper.text()).toContain("We couldn't load the alert history. x.")
    await wrapper.get('button').trigger('click')
    expect(wrapper.emitted('retry')).toHaveLength(1)
  })

  it('empty: explains what will appear', () => {
    const wrapper = mount(AlertHistory, { props: { ...base, state: 'empty', events: [] } })
    expect(wrapper.text()).toContain('No alerts yet')
  })

  it('success: each event in words with its time and delivery state', () => {
    const events = [
      event(3, 'balance_low'),
      event(2, 'balance_topped_up', { data: { amount: 50_000_000 }, delivery: { state: 'pending', attempts: 0 } }),
      event(1, 'cycle_reset', { delivery: { state: 'dead', attempts: 7 } }),
    ]
    const wrapper = mount(AlertHistory, { props: { ...base, state: 'success', events } })
    const rows = wrapper
      .findAll('tbody tr')
      .map((row) => row.findAll('td').map((cell) => cell.text().replace(/\u00a0/g, ' ').replace(/\s+/g, ' ')).join(' | '))
    expect(rows[0]).toBe('30 Nov, 14:56 | Balance fell below 40% | ✓ Delivered')
    expect(rows[1]).toContain('Balance topped up: Rp 500.000')
    expect(rows[1]).toContain('Pending')
    expect(rows[2]).toContain('New cycle: allowance reset')
    expect(rows[2]).toContain('Failed (7 attempts)')
  })

  it('partial: the events shown and a note that more failed; load more emits', async () => {
    const wrapper = mount(AlertHistory, {
      props: { ...base, state: 'partial', events: [event(1, 'balance_low')], hasMore: true, moreState: 'error' },
    })
    expect(wrapper.findAll('tbody tr')).toHaveLength(1)
    expect(wrapper.text()).toContain("We couldn't load more rows.")
    await wrapper.get('button').trigger('click')
    expect(wrapper.emitted('load-more')).toHaveLength(1)
  })
})
