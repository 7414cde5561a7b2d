import { mount } from '@vue/test-utils'
import { describe, expect, it } from 'vitest'
import { info, usage } from '../test/fixtures'
import UsageChart from './UsageChart.vue'

const wabas = info().wabas
const plain = (text: string) => text.replace(/\u00a0/g, ' ')

function mountChart(state: 'loading' | 'empty' | 'error' | 'partial' | 'success', extra = {}) {
  return mount(UsageChart, {
    props: { state, usage: state === 'success' || state === 'partial' ? usage() : null, wabas, currency: 'IDR', ...extra },
  })
}

describe('UsageChart', () => {
  it('loading: a skeleton in a box of the final size', () => {
    const wrapper = mountChart('loading')
    expect(wrapper.get('.chart-box').attributes('data-state')).toBe('loading')
    expect(wrapper.find('.sk-chart').exists()).toBe(true)
    expect(wrapper.find('table').exists()).toBe(false)
  })

  it('error: message and retry', async () => {
    const wrapper = mountChart('error', { errorMessage: 'the server answered 503.' })
    expect(wrapper.text()).toContain("We couldn't load usage. the server answered 503.")
    expect(wrapper.findAll('.segmented button').every((b) => b.attributes('disabled') !== undefined)).toBe(true)
    await wrapper.get('.chart-box button').trigger('click')
    expect(wrapper.emitted('retry')).toHaveLength(1)
  })

  it('empty: says nothing was charged yet', () => {
    expect(mountChart('empty').text()).toContain('No messages have been charged this cycle yet.')
  })

  it('success: stacked bars per WABA, a legend by name, both tables named "usage"', () => {
    const wrapper = mountChart('success')
    expect(wrapper.findAll('.legend li').map((li) => li.text())).toEqual(['Sales', 'Support', 'Promo'])
    // day 1 has two WABAs, day 2 one, day 3 nothing
    expect(wrapper.findAll('svg.chart rect[fill]')).toHaveLength(3)
    const captions = wrapper.findAll('caption').map((caption) => caption.text())
    expect(captions).toEqual(['Daily usage this cycle', 'Usage per WABA this cycle'])
    const daily = wrapper.findAll('table')[0]!
    expect(plain(daily.findAll('tbody tr')[0]!.text())).toBe('29 NovRp 30.00060')
  })

  it('the per-WABA table totals the cycle by WABA, largest first, with shares', () => {
    const rows = mountChart('success').findAll('table')[1]!.findAll('tbody tr').map((row) => plain(row.text()))
    expect(rows).toEqual(['SalesRp 20.0004044%', 'SupportRp 15.0003033%', 'PromoRp 10.0002022%'])
  })

  it('the text alternative is hidden on screen until "Show table", then shows the current view', async () => {
    const wrapper = mountChart('success')
    expect(wrapper.find('.visually-hidden table').exists()).toBe(true)
    await wrapper.get('button[aria-expanded]').trigger('click')
    expect(wrapper.find('.visually-hidden table').exists()).toBe(false)
    expect(wrapper.findAll('table')).toHaveLength(1)
    await wrapper.findAll('.segmented button')[1]!.trigger('click')
    expect(wrapper.get('table caption').text()).toBe('Usage per WABA this cycle')
    expect(wrapper.findAll('.segmented button')[1]!.attributes('aria-pressed')).toBe('true')
  })

  it('arrow keys read the days out', async () => {
    const wrapper = mountChart('success')
    const chart = wrapper.get('.chart-focus')
    await chart.trigger('keydown', { key: 'ArrowRight' })
    expect(plain(wrapper.get('.readout').text())).toBe('29 Nov: Rp 30.000, 60 messages')
    await chart.trigger('keydown', { key: 'End' })
    expect(plain(wrapper.get('.readout').text())).toBe('1 Dec: Rp 0, 0 messages')
    await chart.trigger('keydown', { key: 'ArrowLeft' })
    expect(plain(wrapper.get('.readout').text())).toContain('30 Nov')
  })

  it('partial: without the WABA names the bars are labelled by id and a note says so', () => {
    const wrapper = mountChart('partial', { wabas: [] })
    expect(wrapper.text()).toContain("We couldn't load the WABA names")
    expect(wrapper.findAll('.legend li')[0]!.text()).toBe('102290129340398')
  })
})
