/* Register map of the Intel 82540EM as the e1000 model (e1000.c) and its
 * tests use it: offsets into BAR0, bit fields, descriptor layouts and the
 * M88E1011 PHY registers behind MDIC. Values are from Intel's "PCI/PCI-X
 * Family of Gigabit Ethernet Controllers Software Developer's Manual"
 * (8254x SDM), chapters 3 (descriptors) and 13 (registers). */
#ifndef VIO_EMUL_E1000_REGS_H
#define VIO_EMUL_E1000_REGS_H

/* ---- MAC registers (byte offsets in BAR0) ---- */
#define E1K_CTRL     0x0000
#define E1K_STATUS   0x0008
#define E1K_EECD     0x0010
#define E1K_EERD     0x0014
#define E1K_CTRL_EXT 0x0018
#define E1K_MDIC     0x0020
#define E1K_ICR      0x00c0
#define E1K_ITR      0x00c4
#define E1K_ICS      0x00c8
#define E1K_IMS      0x00d0
#define E1K_IMC      0x00d8
#define E1K_RCTL     0x0100
#define E1K_TCTL     0x0400
#define E1K_LEDCTL   0x0e00
#define E1K_PBA      0x1000
#define E1K_RDBAL    0x2800
#define E1K_RDBAH    0x2804
#define E1K_RDLEN    0x2808
#define E1K_RDH      0x2810
#define E1K_RDT      0x2818
#define E1K_RDTR     0x2820
#define E1K_TDBAL    0x3800
#define E1K_TDBAH    0x3804
#define E1K_TDLEN    0x3808
#define E1K_TDH      0x3810
#define E1K_TDT      0x3818
#define E1K_TIDV     0x3820
#define E1K_STATS    0x4000 /* statistics: 0x4000-0x40ff, clear on read */
#define E1K_STATS_END 0x4100
#define E1K_RXCSUM   0x5000
#define E1K_MTA      0x5200 /* multicast table: 128 dwords */
#define E1K_RA       0x5400 /* receive addresses: 16 pairs RAL, RAH */
#define E1K_VFTA     0x5600
#define E1K_MANC     0x5820

/* Statistics (a few of 0x4000-0x40fc). */
#define E1K_MPC      0x4010 /* missed packets */
#define E1K_PRC64    0x405c
#define E1K_PRC1522  0x4070
#define E1K_GPRC     0x4074
#define E1K_BPRC     0x4078
#define E1K_MPRC     0x407c
#define E1K_GPTC     0x4080
#define E1K_GORCL    0x4088
#define E1K_GORCH    0x408c
#define E1K_GOTCL    0x4090
#define E1K_GOTCH    0x4094
#define E1K_RNBC     0x40a0 /* receive no buffers */
#define E1K_RUC      0x40a4
#define E1K_ROC      0x40ac /* receive oversize */
#define E1K_TORL     0x40c0
#define E1K_TORH     0x40c4
#define E1K_TOTL     0x40c8
#define E1K_TOTH     0x40cc
#define E1K_TPR      0x40d0
#define E1K_TPT      0x40d4
#define E1K_PTC64    0x40d8
#define E1K_MPTC     0x40f0
#define E1K_BPTC     0x40f4
#define E1K_TSCTC    0x40f8 /* TSO contexts transmitted */
#define E1K_TSCTFC   0x40fc /* TSO contexts failed */

/* CTRL */
#define E1K_CTRL_FD      (1u << 0)
#define E1K_CTRL_ASDE    (1u << 5)
#define E1K_CTRL_SLU     (1u << 6)
#define E1K_CTRL_SPD_1000 (2u << 8)
#define E1K_CTRL_RST     (1u << 26)
#define E1K_CTRL_VME     (1u << 30)
#define E1K_CTRL_PHY_RST (1u << 31)

/* STATUS */
#define E1K_STATUS_FD        (1u << 0)
#define E1K_STATUS_LU        (1u << 1)
#define E1K_STATUS_SPEED_1000 (2u << 6)

/* EECD: a Microwire EEPROM bit-banged through these pins. */
#define E1K_EECD_SK   (1u << 0)
#define E1K_EECD_CS   (1u << 1)
#define E1K_EECD_DI   (1u << 2)
#define E1K_EECD_DO   (1u << 3)
#define E1K_EECD_FWE  (3u << 4)
#define E1K_EECD_REQ  (1u << 6)
#define E1K_EECD_GNT  (1u << 7)
#define E1K_EECD_PRES (1u << 8)
#define E1K_EECD_SIZE (1u << 9) /* 0: 64 words (6 address bits) */

/* EERD (82540 layout) */
#define E1K_EERD_START (1u << 0)
#define E1K_EERD_DONE  (1u << 4)
#define E1K_EERD_ADDR_SHIFT 8
#define E1K_EERD_DATA_SHIFT 16

#define E1K_EEPROM_WORDS    64
#define E1K_EEPROM_CSUM_WORD 0x3f
#define E1K_EEPROM_SUM      0xbaba
#define E1K_EE_OP_READ      0x6 /* start bit + 10b, then 6 address bits */

/* MDIC */
#define E1K_MDIC_DATA_MASK 0xffffu
#define E1K_MDIC_REG_SHIFT 16
#define E1K_MDIC_PHY_SHIFT 21
#define E1K_MDIC_OP_WRITE  (1u << 26)
#define E1K_MDIC_OP_READ   (2u << 26)
#define E1K_MDIC_READY     (1u << 28)
#define E1K_MDIC_INT_EN    (1u << 29)
#define E1K_MDIC_ERROR     (1u << 30)
#define E1K_PHY_ADDR       1

/* Interrupt causes (ICR, ICS, IMS, IMC) */
#define E1K_ICR_TXDW   (1u << 0)
#define E1K_ICR_TXQE   (1u << 1)
#define E1K_ICR_LSC    (1u << 2)
#define E1K_ICR_RXSEQ  (1u << 3)
#define E1K_ICR_RXDMT0 (1u << 4)
#define E1K_ICR_RXO    (1u << 6)
#define E1K_ICR_RXT0   (1u << 7)
#define E1K_ICR_MDAC   (1u << 9)
#define E1K_ICR_MASK   0x0001ffffu

/* RCTL */
#define E1K_RCTL_EN    (1u << 1)
#define E1K_RCTL_UPE   (1u << 3)
#define E1K_RCTL_MPE   (1u << 4)
#define E1K_RCTL_LPE   (1u << 5)
#define E1K_RCTL_RDMTS_SHIFT 8
#define E1K_RCTL_MO_SHIFT 12
#define E1K_RCTL_BAM   (1u << 15)
#define E1K_RCTL_BSIZE_SHIFT 16
#define E1K_RCTL_BSEX  (1u << 25)
#define E1K_RCTL_SECRC (1u << 26)

/* TCTL */
#define E1K_TCTL_EN  (1u << 1)
#define E1K_TCTL_PSP (1u << 3)

/* RAH */
#define E1K_RAH_AV (1u << 31)

/* ---- descriptors (16 bytes, little-endian) ---- */

/* Receive (legacy): addr(8) length(2) csum(2) status(1) errors(1) special(2). */
#define E1K_RXD_STAT_DD   0x01
#define E1K_RXD_STAT_EOP  0x02
#define E1K_RXD_STAT_IXSM 0x04 /* ignore the checksum indications */
#define E1K_RXD_ERR_RXE   0x80

/* Transmit: byte 11 is CMD (legacy), TUCMD (context) or DCMD (data). */
#define E1K_TXD_CMD_EOP  0x01
#define E1K_TXD_CMD_IFCS 0x02
#define E1K_TXD_CMD_IC   0x04 /* legacy: insert checksum at CSO */
#define E1K_TXD_CMD_TSE  0x04 /* data, context: TCP segmentation */
#define E1K_TXD_CMD_RS   0x08
#define E1K_TXD_CMD_DEXT 0x20
#define E1K_TXD_CMD_VLE  0x40
#define E1K_TXD_CMD_IDE  0x80
#define E1K_TUCMD_TCP    0x01 /* context: TCP (else UDP) */
#define E1K_TUCMD_IP     0x02 /* context: IPv4 (else IPv6) */
#define E1K_TXD_DTYP_CTX 0x0
#define E1K_TXD_DTYP_DATA 0x1
#define E1K_TXD_STAT_DD  0x01 /* byte 12 */
#define E1K_TXD_POPTS_IXSM 0x01 /* data byte 13 */
#define E1K_TXD_POPTS_TXSM 0x02
/* Most bytes one transmit descriptor may carry (8254x SDM, 3.3.3). */
#define E1K_TXD_MAX_LEN  16288

/* ---- M88E1011 PHY registers (MDIC address 1) ---- */
#define E1K_PHY_CTRL      0
#define E1K_PHY_STATUS    1
#define E1K_PHY_ID1       2
#define E1K_PHY_ID2       3
#define E1K_PHY_ADV       4
#define E1K_PHY_LPA       5
#define E1K_PHY_EXP       6
#define E1K_PHY_1000T_CTRL 9
#define E1K_PHY_1000T_STATUS 10
#define E1K_PHY_EXT_STATUS 15
#define E1K_PHY_SPEC_CTRL 16
#define E1K_PHY_SPEC_STATUS 17
#define E1K_PHY_INT_STATUS 19
#define E1K_PHY_EXT_SPEC_CTRL 20

#define E1K_PHY_CTRL_RESET   0x8000
#define E1K_PHY_CTRL_RESTART 0x0200
#define E1K_PHY_STATUS_LINK  0x0004
#define E1K_PHY_STATUS_ANEG_DONE 0x0020
#define E1K_PHY_ID1_M88      0x0141
#define E1K_PHY_ID2_M88E1011 0x0c20

#endif
