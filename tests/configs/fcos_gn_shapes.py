# FCOS with group norm everywhere (timm resnet18 with GroupNorm, GN head) on the shapes data,
# with a deterministic pipeline (no flip) and no shuffling: one process with a batch of 2 and
# two processes with a batch of 1 see the same images per step. FCOS normalises its losses by
# the positives averaged over ranks (mmdet's reduce_mean), so the two runs are the same
# optimisation and their losses agree step by step.
_base_ = '../../configs/solo_timm_shapes.py'

model = dict(
    _delete_=True,
    type='FCOS',
    backbone=dict(type='TIMMBackbone', model_name='resnet18', pretrained=False,
                  out_indices=(2, 3, 4), norm_layer='groupnorm'),
    neck=dict(type='FPN', in_channels='auto', out_channels=32, start_level=0,
              add_extra_convs='on_output', num_outs=3, relu_before_extra_convs=True),
    bbox_head=dict(
        type='FCOSHead', num_classes=3, in_channels=32, feat_channels=32, stacked_convs=2,
        strides=[8, 16, 32], regress_ranges=((-1, 16), (16, 32), (32, 1e8)),
        norm_cfg=dict(type='GN', num_groups=8, requires_grad=True),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='IoULoss', loss_weight=1.0),
        loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)),
    train_cfg=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4,
                                 min_pos_iou=0, ignore_iof_thr=-1),
                   allowed_border=-1, pos_weight=-1, debug=False),
    test_cfg=dict(nms_pre=100, min_bbox_size=0, score_thr=0.05,
                  nms=dict(type='nms', iou_threshold=0.5), max_per_img=20))

data = dict(
    train=dict(pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='Resize', img_scale=(160, 160), keep_ratio=True),
        dict(type='RandomFlip', flip_ratio=0.0),
        dict(type='Normalize', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
             to_rgb=True),
        dict(type='Pad', size_divisor=32),
        dict(type='DefaultFormatBundle'),
        dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels']),
    ]),
    train_dataloader=dict(shuffle=False))
optimizer = dict(_delete_=True, type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4)
lr_config = dict(_delete_=True, policy='fixed')
evaluation = dict(interval=100, metric=['bbox'])
